/* Parity UI charts: small hand-written SVG charts (line with threshold, bars, scatter, alias
   timeline, weights bar). Each function takes plain values and returns an <svg> element; no
   data is ever written as markup (text goes through textContent). No dependencies. */
"use strict";

const Charts = (() => {
  const NS = "http://www.w3.org/2000/svg";
  const PAD = { left: 56, right: 16, top: 12, bottom: 30 };

  function svg(tag, attrs, text) {
    const node = document.createElementNS(NS, tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value !== null && value !== undefined) node.setAttribute(key, String(value));
    }
    if (text !== undefined) node.textContent = String(text);
    return node;
  }

  function frame(width, height, testid) {
    return svg("svg", {
      width, height, viewBox: `0 0 ${width} ${height}`, class: "chart", "data-testid": testid,
      role: "img",
    });
  }

  // A linear map from [d0, d1] to [r0, r1]; a flat domain maps to the middle.
  function scale(d0, d1, r0, r1) {
    if (!(d1 > d0)) return () => (r0 + r1) / 2;
    return (v) => r0 + ((v - d0) / (d1 - d0)) * (r1 - r0);
  }

  function extent(values) {
    const finite = values.filter((v) => v !== null && Number.isFinite(v));
    if (!finite.length) return [0, 1];
    const low = Math.min(...finite);
    const high = Math.max(...finite);
    if (high > low) return [low, high];
    return low === 0 ? [0, 1] : [low - Math.abs(low) / 2, high + Math.abs(high) / 2];
  }

  function fmt(value) {
    if (value === null || value === undefined || !Number.isFinite(value)) return "–";
    const abs = Math.abs(value);
    if (abs < 1e-9) return "0"; // float noise (an intercept of -7e-14)
    if (abs !== 0 && (abs < 0.001 || abs >= 1e6)) return value.toExponential(2);
    return String(Number(value.toPrecision(3)));
  }

  function day(ms) {
    return new Date(ms).toISOString().slice(0, 10);
  }

  function axes(root, box, yDomain, xLabels) {
    const { x0, x1, y0, y1 } = box;
    root.append(svg("line", { x1: x0, y1: y1, x2: x1, y2: y1, class: "axis" }));
    root.append(svg("line", { x1: x0, y1: y0, x2: x0, y2: y1, class: "axis" }));
    root.append(svg("text", { x: x0 - 4, y: y0 + 8, class: "tick end" }, fmt(yDomain[1])));
    root.append(svg("text", { x: x0 - 4, y: y1, class: "tick end" }, fmt(yDomain[0])));
    if (xLabels) {
      root.append(svg("text", { x: x0, y: y1 + 16, class: "tick" }, xLabels[0]));
      root.append(svg("text", { x: x1, y: y1 + 16, class: "tick end" }, xLabels[1]));
    }
  }

  /* series: [{name, points: [{x: ms, y: number|null}], cls}]; options: {threshold, width,
     height, testid, yMin, yMax}. One <path> per series (a null y starts a new segment), a
     dashed threshold line, a dot per point with its value as a tooltip. */
  function line(series, options = {}) {
    const width = options.width || 560;
    const height = options.height || 180;
    const root = frame(width, height, options.testid || "line-chart");
    const xs = series.flatMap((s) => s.points.map((p) => p.x));
    const ys = series.flatMap((s) => s.points.map((p) => p.y));
    if (options.threshold !== null && options.threshold !== undefined) ys.push(options.threshold);
    let [ylo, yhi] = extent(ys);
    if (options.yMin !== undefined) ylo = Math.min(ylo, options.yMin);
    if (options.yMax !== undefined) yhi = Math.max(yhi, options.yMax);
    const [xlo, xhi] = extent(xs);
    const box = { x0: PAD.left, x1: width - PAD.right, y0: PAD.top, y1: height - PAD.bottom };
    const sx = scale(xlo, xhi, box.x0, box.x1);
    const sy = scale(ylo, yhi, box.y1, box.y0);
    axes(root, box, [ylo, yhi], xs.length ? [day(xlo), day(xhi)] : null);
    if (options.threshold !== null && options.threshold !== undefined) {
      const y = sy(options.threshold);
      root.append(svg("line", {
        x1: box.x0, y1: y, x2: box.x1, y2: y, class: "threshold", "data-testid": "threshold",
      }));
      root.append(svg("text", { x: box.x1, y: y - 3, class: "tick end" },
        `threshold ${fmt(options.threshold)}`));
    }
    series.forEach((s, i) => {
      let d = "";
      let pen = "M";
      let count = 0;
      for (const p of s.points) {
        if (p.y === null || !Number.isFinite(p.y)) { pen = "M"; continue; }
        d += `${pen}${sx(p.x).toFixed(1)},${sy(p.y).toFixed(1)} `;
        pen = "L";
        count += 1;
      }
      const cls = `series s${i % 4} ${s.cls || ""}`;
      const path = svg("path", { d: d.trim() || "M0,0", class: cls, "data-testid": "series",
        "data-series": s.name, "data-points": count });
      root.append(path);
      for (const p of s.points) {
        if (p.y === null || !Number.isFinite(p.y)) continue;
        const dot = svg("circle", { cx: sx(p.x), cy: sy(p.y), r: 2.5,
          class: `dot s${i % 4} ${p.cls || ""}` });
        dot.append(svg("title", {}, `${s.name} ${new Date(p.x).toISOString()}: ${fmt(p.y)}`));
        root.append(dot);
      }
    });
    if (series.length > 1) legend(root, series.map((s) => s.name), box.x0 + 8, box.y0 + 4);
    return root;
  }

  function legend(root, names, x, y) {
    names.forEach((name, i) => {
      root.append(svg("rect", { x, y: y + i * 14, width: 10, height: 3, class: `key s${i % 4}` }));
      root.append(svg("text", { x: x + 14, y: y + i * 14 + 5, class: "tick" }, name));
    });
  }

  /* bars: [{label, value, title}]: a bar per item (a histogram when the labels are bins). */
  function bars(items, options = {}) {
    const width = options.width || 560;
    const height = options.height || 160;
    const root = frame(width, height, options.testid || "bar-chart");
    const box = { x0: PAD.left, x1: width - PAD.right, y0: PAD.top, y1: height - PAD.bottom };
    const top = Math.max(0, ...items.map((b) => (Number.isFinite(b.value) ? b.value : 0)));
    const sy = scale(0, top || 1, box.y1, box.y0);
    axes(root, box, [0, top || 1], null);
    const step = (box.x1 - box.x0) / Math.max(items.length, 1);
    items.forEach((b, i) => {
      const value = Number.isFinite(b.value) ? b.value : 0;
      const x = box.x0 + i * step + 1;
      const rect = svg("rect", { x, y: sy(value), width: Math.max(step - 2, 1),
        height: Math.max(box.y1 - sy(value), 0), class: "bar", "data-testid": "bar" });
      rect.append(svg("title", {}, `${b.title || b.label}: ${fmt(value)}`));
      root.append(rect);
      if (items.length <= 12) {
        root.append(svg("text", { x: x + step / 2, y: box.y1 + 14, class: "tick middle" },
          String(b.label).slice(0, 12)));
      }
    });
    return root;
  }

  /* points: [[a, b], ...]; options.fit: {slope, intercept} draws the fitted line. */
  function scatter(points, options = {}) {
    const width = options.width || 240;
    const height = options.height || 200;
    const root = frame(width, height, options.testid || "scatter");
    const box = { x0: 44, x1: width - 10, y0: 10, y1: height - 26 };
    const finite = points.filter((p) => Number.isFinite(p[0]) && Number.isFinite(p[1]));
    const [xlo, xhi] = extent(finite.map((p) => p[0]));
    const [ylo, yhi] = extent(finite.map((p) => p[1]));
    const sx = scale(xlo, xhi, box.x0, box.x1);
    const sy = scale(ylo, yhi, box.y1, box.y0);
    axes(root, box, [ylo, yhi], [fmt(xlo), fmt(xhi)]);
    const fit = options.fit;
    if (fit && Number.isFinite(fit.slope) && Number.isFinite(fit.intercept)) {
      root.append(svg("line", { x1: sx(xlo), y1: sy(fit.slope * xlo + fit.intercept),
        x2: sx(xhi), y2: sy(fit.slope * xhi + fit.intercept), class: "fit" }));
    }
    for (const [a, b] of finite) {
      root.append(svg("circle", { cx: sx(a), cy: sy(b), r: 2.5, class: "dot s0",
        "data-testid": "scatter-point" }));
    }
    return root;
  }

  /* lanes: [{alias, segments: [{start: ms, end: ms, version, reason}]}], marks: [{at: ms,
     label, cls}], options: {from, to, at}: one lane per alias, a box per period labelled with
     its version, a tick per event (rollbacks in their own class), a line at `at`. */
  function timeline(lanes, marks, options = {}) {
    const width = options.width || 900;
    const laneHeight = 34;
    const height = PAD.top + lanes.length * laneHeight + 34;
    const root = frame(width, height, options.testid || "alias-timeline");
    const x0 = 110;
    const x1 = width - PAD.right;
    const sx = scale(options.from, options.to, x0, x1);
    const clamp = (v) => Math.min(Math.max(v, x0), x1);
    lanes.forEach((lane, i) => {
      const y = PAD.top + i * laneHeight;
      root.append(svg("text", { x: x0 - 8, y: y + 20, class: "lane end" }, `@${lane.alias}`));
      for (const seg of lane.segments) {
        const a = clamp(sx(seg.start));
        const b = clamp(sx(seg.end));
        const box = svg("rect", { x: a, y: y + 4, width: Math.max(b - a, 2), height: laneHeight - 8,
          class: `segment v${seg.version % 6}`, "data-testid": "timeline-segment",
          "data-alias": lane.alias, "data-version": seg.version,
          "data-start": new Date(seg.start).toISOString() });
        box.append(svg("title", {}, `${lane.alias}: version ${seg.version} from ` +
          `${new Date(seg.start).toISOString()}${seg.reason ? ` (${seg.reason})` : ""}`));
        root.append(box);
        if (b - a > 24) {
          root.append(svg("text", { x: a + 4, y: y + 21, class: "seg-label" }, `v${seg.version}`));
        }
      }
    });
    const bottom = PAD.top + lanes.length * laneHeight;
    for (const mark of marks) {
      const x = clamp(sx(mark.at));
      const tick = svg("line", { x1: x, y1: PAD.top, x2: x, y2: bottom + 4,
        class: `mark ${mark.cls || ""}`, "data-testid": `timeline-${mark.cls || "event"}` });
      tick.append(svg("title", {}, mark.label));
      root.append(tick);
    }
    root.append(svg("line", { x1: x0, y1: bottom + 4, x2: x1, y2: bottom + 4, class: "axis" }));
    root.append(svg("text", { x: x0, y: bottom + 20, class: "tick" }, day(options.from)));
    root.append(svg("text", { x: x1, y: bottom + 20, class: "tick end" }, day(options.to)));
    if (options.at !== undefined && options.at !== null) {
      const x = clamp(sx(options.at));
      root.append(svg("line", { x1: x, y1: PAD.top - 4, x2: x, y2: bottom + 8, class: "at",
        "data-testid": "timeline-at" }));
    }
    return root;
  }

  /* The traffic split: the candidate's share of the bar, the champion's the rest. */
  function weights(candidate, champion, options = {}) {
    const width = options.width || 480;
    const root = frame(width, 28, options.testid || "weights");
    const total = candidate + champion > 0 ? candidate + champion : 100;
    const w = (width * candidate) / total;
    root.append(svg("rect", { x: 0, y: 4, width, height: 20, class: "weight champion" }));
    root.append(svg("rect", { x: 0, y: 4, width: w, height: 20, class: "weight candidate",
      "data-testid": "weight-candidate" }));
    root.append(svg("text", { x: 6, y: 18, class: "weight-label" },
      `candidate ${fmt(candidate)} %`));
    root.append(svg("text", { x: width - 6, y: 18, class: "weight-label end" },
      `champion ${fmt(champion)} %`));
    return root;
  }

  return { line, bars, scatter, timeline, weights, fmt };
})();
