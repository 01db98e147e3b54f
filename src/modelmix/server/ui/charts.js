// modelmix dashboard charts: small inline SVG drawn with DOM calls only (no innerHTML,
// no library). Every label is set with textContent.
"use strict";
(function () {
  const NS = "http://www.w3.org/2000/svg";
  const W = 600, H = 180, PAD_L = 48, PAD_B = 22, PAD_T = 8, PAD_R = 8;

  function node(tag, attrs) {
    const el = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
    return el;
  }

  function frame(container, maxY, points, fmtY) {
    container.replaceChildren();
    const svg = node("svg", { viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "xMinYMin meet",
                              role: "img" });
    const plotH = H - PAD_B - PAD_T;
    for (const frac of [0, 0.5, 1]) {
      const y = PAD_T + plotH * (1 - frac);
      svg.appendChild(node("line", { x1: PAD_L, x2: W - PAD_R, y1: y, y2: y, class: "axis" }));
      const label = node("text", { x: PAD_L - 4, y: y + 3, "text-anchor": "end" });
      label.textContent = fmtY(maxY * frac);
      svg.appendChild(label);
    }
    if (points.length) {
      const ends = points.length > 1 ? [[0, "start"], [points.length - 1, "end"]] : [[0, "start"]];
      for (const [i, anchor] of ends) {
        const t = node("text", { x: i === 0 ? PAD_L : W - PAD_R, y: H - 6, "text-anchor": anchor });
        t.textContent = new Date(points[i].start * 1000).toLocaleString();
        svg.appendChild(t);
      }
    }
    container.appendChild(svg);
    return { svg, plotH, plotW: W - PAD_L - PAD_R };
  }

  function legend(container, items) {
    const div = document.createElement("div");
    div.className = "legend";
    for (const item of items) {
      const span = document.createElement("span");
      const sw = document.createElement("i");
      sw.className = "swatch " + item.swatch;
      span.append(sw, item.label);
      div.appendChild(span);
    }
    container.appendChild(div);
  }

  // lines: [{key, cls, label, swatch}] drawn over points[].key
  function line(container, points, lines, fmtY) {
    const values = points.flatMap((p) => lines.map((l) => Number(p[l.key]) || 0));
    const maxY = Math.max(1e-9, ...values);
    const { svg, plotH, plotW } = frame(container, maxY, points, fmtY);
    const step = points.length > 1 ? plotW / (points.length - 1) : 0;
    for (const l of lines) {
      const coords = points.map((p, i) => {
        const x = PAD_L + (points.length > 1 ? i * step : plotW / 2);
        const y = PAD_T + plotH * (1 - (Number(p[l.key]) || 0) / maxY);
        return `${x.toFixed(1)},${y.toFixed(1)}`;
      });
      if (coords.length) svg.appendChild(node("polyline", { points: coords.join(" "), class: l.cls }));
      for (const c of coords) {
        const [cx, cy] = c.split(",");
        svg.appendChild(node("circle", { cx, cy, r: 3, class: l.cls }));
      }
    }
    legend(container, lines);
  }

  // stacks: [{key, cls, label, swatch}] stacked per point
  function bars(container, points, stacks, fmtY) {
    const maxY = Math.max(1, ...points.map((p) => stacks.reduce((s, k) => s + (Number(p[k.key]) || 0), 0)));
    const { svg, plotH, plotW } = frame(container, maxY, points, fmtY);
    const slot = points.length ? plotW / points.length : plotW;
    points.forEach((p, i) => {
      let top = PAD_T + plotH;
      for (const s of stacks) {
        const h = plotH * (Number(p[s.key]) || 0) / maxY;
        if (h <= 0) continue;
        top -= h;
        svg.appendChild(node("rect", { x: (PAD_L + i * slot + slot * 0.1).toFixed(1),
                                       y: top.toFixed(1), width: Math.max(1, slot * 0.8).toFixed(1),
                                       height: h.toFixed(1), class: s.cls }));
      }
    });
    legend(container, stacks);
  }

  window.MMCharts = { line, bars };
})();
