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

  /* The dagre graph of a run: a node per stage, an edge per requisite and one from each stage to
   * its synthetic stages, weighted so dagre keeps a synthetic stage beside its parent. (Drawing
   * synthetic stages inside a compound cluster was tried: dagre then scatters large runs.) */
  function layout(graph) {
    const g = new dagre.graphlib.Graph({ multigraph: true });
    g.setGraph({ rankdir: "LR", nodesep: 16, ranksep: 48, edgesep: 10, marginx: 16, marginy: 16 });
    g.setDefaultEdgeLabel(function () { return {}; });
    for (const n of graph.nodes) g.setNode(n.id, { width: NODE_WIDTH, height: NODE_HEIGHT, stage: n });
    const byId = new Map(graph.nodes.map(function (n) { return [n.id, n]; }));
    // dagre's initial ordering stacks a stage's successors in reverse order of their edges' insertion;
    // adding the edges last-first puts siblings top to bottom in the run's own order (work-1 first).
    for (const e of graph.edges.slice().reverse()) {
      // A synthetic stage that runs before its parent is drawn before it: the arrow says "then".
      const before = e.kind === "synthetic" && (byId.get(e.target) || {}).synthetic_stage_owner === "STAGE_BEFORE";
      const label = { kind: e.kind, weight: e.kind === "synthetic" ? 8 : 1 };
      if (before) g.setEdge(e.target, e.source, label, e.kind);
      else g.setEdge(e.source, e.target, label, e.kind);
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
    const edges = element("g", { class: "dag-edges" }, svg);
    const nodes = element("g", { class: "dag-nodes" }, svg);
    const groups = new Map();
    for (const e of g.edges()) drawEdge(edges, g.edge(e));
    for (const id of g.nodes()) groups.set(id, drawNode(nodes, g.node(id), link));
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
