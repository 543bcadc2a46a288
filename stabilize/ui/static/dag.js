/* The DAG picture of a run: dagre (vendored, static/vendor/dagre.min.js) computes the layered
 * layout; this file only draws it as SVG. Every string from the database enters the page through
 * textContent or setAttribute, never as markup. */
(function () {
  "use strict";

  const SVG = "http://www.w3.org/2000/svg";
  const NODE_WIDTH = 184;
  const NODE_HEIGHT = 44;
  const MAX_CHARS = 24;

  function element(name, attributes, parent) {
    const node = document.createElementNS(SVG, name);
    for (const [key, value] of Object.entries(attributes || {})) node.setAttribute(key, String(value));
    if (parent) parent.appendChild(node);
    return node;
  }

  function clip(text) {
    const line = text.replace(/\s+/g, " ").trim();
    return line.length > MAX_CHARS ? line.slice(0, MAX_CHARS - 1) + "\u2026" : line;
  }

  function clusterId(stageId) {
    return "cluster:" + stageId;
  }

  /* A compound dagre graph: a stage with synthetic stages becomes a cluster holding the stage and
   * its synthetic ones (nested clusters for nested synthetic stages). */
  function layout(graph) {
    const g = new dagre.graphlib.Graph({ compound: true, multigraph: true });
    g.setGraph({ rankdir: "LR", nodesep: 16, ranksep: 48, edgesep: 10, marginx: 16, marginy: 16 });
    g.setDefaultEdgeLabel(function () { return {}; });
    const known = new Set(graph.nodes.map(function (n) { return n.id; }));
    const parents = new Set();
    for (const n of graph.nodes) if (n.parent_stage_id && known.has(n.parent_stage_id)) parents.add(n.parent_stage_id);
    for (const n of graph.nodes) g.setNode(n.id, { width: NODE_WIDTH, height: NODE_HEIGHT, stage: n });
    for (const id of parents) {
      g.setNode(clusterId(id), { cluster: true, padding: 8 });
      g.setParent(id, clusterId(id));
    }
    for (const n of graph.nodes) {
      if (!parents.has(n.parent_stage_id)) continue;
      const box = parents.has(n.id) ? clusterId(n.id) : n.id;
      g.setParent(box, clusterId(n.parent_stage_id));
    }
    const byId = new Map(graph.nodes.map(function (n) { return [n.id, n]; }));
    for (const e of graph.edges) {
      // A synthetic stage that runs before its parent is drawn before it: the arrow says "then".
      const before = e.kind === "synthetic" && (byId.get(e.target) || {}).synthetic_stage_owner === "STAGE_BEFORE";
      if (before) g.setEdge(e.target, e.source, { kind: e.kind }, e.kind);
      else g.setEdge(e.source, e.target, { kind: e.kind }, e.kind);
    }
    dagre.layout(g);
    return g;
  }

  function defs(svg) {
    const d = element("defs", {}, svg);
    const marker = element("marker", {
      id: "dag-arrow", viewBox: "0 0 10 10", refX: 9, refY: 5,
      markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse",
    }, d);
    element("path", { d: "M0,0 L10,5 L0,10 z", class: "dag-arrowhead" }, marker);
  }

  /* A cluster is outlined around the stages it holds (dagre's own cluster box spans whole ranks). */
  function drawCluster(layer, g, id) {
    const pad = 8;
    let left = Infinity, top = Infinity, right = -Infinity, bottom = -Infinity;
    const pending = g.children(id).slice();
    while (pending.length) {
      const child = pending.pop();
      const box = g.node(child);
      if (box.cluster) { pending.push.apply(pending, g.children(child)); continue; }
      left = Math.min(left, box.x - box.width / 2);
      right = Math.max(right, box.x + box.width / 2);
      top = Math.min(top, box.y - box.height / 2);
      bottom = Math.max(bottom, box.y + box.height / 2);
    }
    if (left === Infinity) return;
    element("rect", {
      class: "dag-cluster", x: left - pad, y: top - pad, width: right - left + 2 * pad,
      height: bottom - top + 2 * pad, rx: 8,
    }, layer);
  }

  function drawEdge(layer, edge) {
    const points = edge.points.map(function (p) { return p.x.toFixed(1) + "," + p.y.toFixed(1); });
    element("path", {
      class: "dag-edge dag-edge-" + edge.kind, d: "M" + points.join(" L"), "marker-end": "url(#dag-arrow)",
    }, layer);
  }

  function paint(group, stage) {
    group.setAttribute("data-status", stage.status);
    group.querySelector("rect").setAttribute("fill", stage.colour);
    for (const text of group.querySelectorAll("text")) text.setAttribute("fill", stage.ink);
    group.querySelector(".dag-state").textContent = stage.status + " \u00b7 " + stage.tasks;
    group.querySelector("title").textContent =
      stage.name + " (" + stage.ref_id + ")\n" + stage.status + ", tasks " + stage.tasks +
      "\nstarted " + stage.started + ", took " + stage.duration;
  }

  function drawNode(layer, box, link) {
    const stage = box.stage;
    const anchor = element("a", { href: link(stage), class: "dag-link" }, layer);
    const group = element("g", {
      class: "dag-node" + (stage.parent_stage_id ? " dag-synthetic" : ""),
      transform: "translate(" + (box.x - box.width / 2) + "," + (box.y - box.height / 2) + ")",
      "data-stage-id": stage.id, "data-ref-id": stage.ref_id,
    }, anchor);
    element("title", {}, group);
    element("rect", { width: box.width, height: box.height, rx: 6, class: "dag-box" }, group);
    element("text", { x: 10, y: 18, class: "dag-name" }, group).textContent = clip(stage.name);
    element("text", { x: 10, y: 34, class: "dag-state" }, group);
    paint(group, stage);
    return group;
  }

  /* Draw ``graph`` (the /api/runs/{id}/graph document) into ``container``; ``link(stage)`` is each
   * node's href. Returns the per-stage SVG groups, for update(). */
  function draw(container, graph, link) {
    const started = performance.now();
    const g = layout(graph);
    const laidOut = performance.now();
    const size = g.graph();
    const svg = element("svg", {
      class: "dag-svg", xmlns: SVG, viewBox: "0 0 " + Math.ceil(size.width) + " " + Math.ceil(size.height),
      width: Math.ceil(size.width), height: Math.ceil(size.height), role: "img",
      "aria-label": "DAG of " + graph.nodes.length + " stages",
    });
    defs(svg);
    const clusters = element("g", { class: "dag-clusters" }, svg);
    const edges = element("g", { class: "dag-edges" }, svg);
    const nodes = element("g", { class: "dag-nodes" }, svg);
    const groups = new Map();
    for (const id of g.nodes()) if (g.node(id).cluster) drawCluster(clusters, g, id);
    for (const e of g.edges()) drawEdge(edges, g.edge(e));
    for (const id of g.nodes()) {
      const box = g.node(id);
      if (!box.cluster) groups.set(id, drawNode(nodes, box, link));
    }
    container.replaceChildren(svg);
    container.dataset.nodes = String(groups.size);
    container.dataset.layoutMs = (laidOut - started).toFixed(1);
    container.dataset.drawMs = (performance.now() - started).toFixed(1);
    container.dataset.drawn = "true";
    performance.mark("dag-drawn");
    return groups;
  }

  /* Recolour the drawn nodes from a newer graph of the same stages. */
  function update(groups, graph) {
    for (const stage of graph.nodes) {
      const group = groups.get(stage.id);
      if (group) paint(group, stage);
    }
  }

  function sameStages(groups, graph) {
    return groups.size === graph.nodes.length && graph.nodes.every(function (n) { return groups.has(n.id); });
  }

  window.StabilizeDag = { draw: draw, update: update, sameStages: sameStages };
})();
