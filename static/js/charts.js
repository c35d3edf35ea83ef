// Renders every <div data-figure="ID"> with the plotly figure JSON in <script id="ID">.
// plotly.js is served from our own static files (no CDN).
(function () {
  "use strict";
  function render() {
    if (!window.Plotly) return;
    document.querySelectorAll("[data-figure]").forEach(function (el) {
      const src = document.getElementById(el.dataset.figure);
      if (!src) return;
      const fig = JSON.parse(src.textContent);
      const layout = Object.assign(
        {
          margin: { l: 50, r: 20, t: 30, b: 40 },
          paper_bgcolor: "rgba(0,0,0,0)",
          plot_bgcolor: "rgba(0,0,0,0)",
          font: { family: "system-ui, sans-serif", size: 13, color: "#1b1f24" },
          legend: { orientation: "h", x: 0, y: 1.02, yanchor: "bottom" },
          autosize: true,
        },
        fig.layout || {}
      );
      // Long category names (tenants) rotate; let the axis take the room it needs.
      layout.xaxis = Object.assign({ automargin: true }, layout.xaxis || {});
      layout.yaxis = Object.assign({ automargin: true }, layout.yaxis || {});
      Plotly.newPlot(el, fig.data, layout, { displaylogo: false, responsive: true, modeBarButtonsToRemove: ["lasso2d", "select2d"] });
      el.dataset.rendered = "1";
    });
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", render);
  else render();
})();
