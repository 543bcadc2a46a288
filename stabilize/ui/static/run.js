/* A run's page: draw its DAG, and while the run is unfinished poll /api/runs/{id}/graph and bring
 * the picture, the statuses and the times up to date (text only, via textContent). When the run
 * ends the page reloads once, so contexts and outputs are shown as they ended. */
(function () {
  "use strict";

  const container = document.getElementById("dag");
  const island = document.getElementById("run-graph");
  if (!container || !island) return;

  function link(stage) {
    return "?stage=" + encodeURIComponent(stage.ref_id) + "#ancestors";
  }

  function setStatus(cell, status) {
    const badge = cell.querySelector(".status");
    if (!badge || badge.dataset.status === status) return;
    badge.className = "status status-" + status;
    badge.dataset.status = status;
    badge.textContent = status;
  }

  function setText(root, field, value) {
    const cell = root.querySelector('[data-field="' + field + '"]');
    if (cell && cell.textContent !== value) cell.textContent = value;
  }

  function updateTable(graph) {
    setStatus(document.querySelector('[data-field="run-status"]'), graph.status);
    setText(document, "run-started", graph.started);
    setText(document, "run-duration", graph.duration);
    for (const stage of graph.nodes) {
      const row = document.getElementById("stage-" + stage.id);
      if (!row) continue;
      setStatus(row.querySelector('[data-field="status"]'), stage.status);
      setText(row, "started", stage.started);
      setText(row, "duration", stage.duration);
      setText(row, "tasks", stage.tasks);
    }
  }

  let graph = JSON.parse(island.textContent);
  let groups = window.StabilizeDag.draw(container, graph, link);

  const fit = document.getElementById("dag-fit");
  if (fit) {
    fit.addEventListener("click", function () {
      const on = container.classList.toggle("dag-fit");
      fit.setAttribute("aria-pressed", on ? "true" : "false");
    });
  }

  const every = Number(container.dataset.refreshMs) || 2000;
  const url = container.dataset.graphUrl;

  function poll() {
    fetch(url, { headers: { accept: "application/json" }, cache: "no-store" })
      .then(function (response) {
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.json();
      })
      .then(function (next) {
        if (window.StabilizeDag.sameStages(groups, next)) {
          window.StabilizeDag.update(groups, next);
        } else {
          groups = window.StabilizeDag.draw(container, next, link);
        }
        graph = next;
        updateTable(graph);
        container.dataset.refreshed = String(Number(container.dataset.refreshed || "0") + 1);
        if (graph.complete) {
          window.location.reload();
          return;
        }
        window.setTimeout(poll, every);
      })
      .catch(function () {
        container.dataset.refreshError = "true";
        window.setTimeout(poll, every * 2);
      });
  }

  if (container.dataset.live === "true" && !graph.complete) window.setTimeout(poll, every);
})();
