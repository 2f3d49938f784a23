/* Parity UI: the lineage graph (a layered SVG, one column per kind, source to rollout; click a
   node to focus it, its page is linked) and the duplicate scan (start, progress, pairs with
   their evidence and a scatter of the sampled values). */
"use strict";

(() => {
  const { el, link, badge, section, empty, when, num, percent, api, query } = UI;
  const NS = "http://www.w3.org/2000/svg";
  const ORDER = ["entity", "source", "request_source", "view", "service", "dataset", "job",
    "model_version", "alias", "rollout"];
  const BOX = { width: 150, height: 28, column: 176, row: 40, top: 30 };

  function svg(tag, attrs, text) {
    const node = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
    if (text !== undefined) node.textContent = text;
    return node;
  }

  /* Columns of node ids: by kind (ORDER), and a view fed by another view (on-demand) one
     column further right. Within a column, nodes follow the mean row of their inputs. */
  function layout(nodes, edges) {
    const byId = new Map(nodes.map((n) => [n.id, n]));
    const inputs = new Map(nodes.map((n) => [n.id, []]));
    for (const e of edges) {
      if (byId.has(e.source) && byId.has(e.target)) inputs.get(e.target).push(e.source);
    }
    const depth = new Map();
    const sameKindDepth = (id, seen) => {
      if (depth.has(id)) return depth.get(id);
      if (seen.has(id)) return 0;
      seen.add(id);
      const kind = byId.get(id).kind;
      const ups = inputs.get(id).filter((s) => byId.get(s).kind === kind);
      const d = ups.length ? 1 + Math.max(...ups.map((s) => sameKindDepth(s, seen))) : 0;
      depth.set(id, d);
      return d;
    };
    const rank = (kind) => (ORDER.includes(kind) ? ORDER.indexOf(kind) : ORDER.length);
    const keyOf = (n) => rank(n.kind) * 100 + sameKindDepth(n.id, new Set());
    const keys = [...new Set(nodes.map(keyOf))].sort((a, b) => a - b);
    const columns = keys.map((k) => nodes.filter((n) => keyOf(n) === k));
    const row = new Map();
    for (const column of columns) {
      const mean = (n) => {
        const rows = inputs.get(n.id).filter((s) => row.has(s)).map((s) => row.get(s));
        return rows.length ? rows.reduce((a, b) => a + b, 0) / rows.length : Infinity;
      };
      column.sort((a, b) => mean(a) - mean(b) || a.label.localeCompare(b.label));
      column.forEach((n, i) => row.set(n.id, i));
    }
    return { columns, row };
  }

  function graph(data, onFocus) {
    const { columns, row } = layout(data.nodes, data.edges);
    const rows = Math.max(1, ...columns.map((c) => c.length));
    const width = Math.max(columns.length, 1) * BOX.column;
    const height = BOX.top + rows * BOX.row;
    const root = svg("svg", { width, height, viewBox: `0 0 ${width} ${height}`,
      class: "lineage", "data-testid": "lineage-graph" });
    const place = new Map();
    columns.forEach((column, c) => {
      const kind = column[0].kind;
      root.append(svg("text", { x: c * BOX.column + 4, y: 16, class: "column-title" },
        kind.replace("_", " ")));
      column.forEach((n) => place.set(n.id, { x: c * BOX.column + 4,
        y: BOX.top + row.get(n.id) * BOX.row }));
    });
    for (const e of data.edges) {
      const a = place.get(e.source);
      const b = place.get(e.target);
      if (!a || !b) continue;
      const x1 = a.x + BOX.width;
      const y1 = a.y + BOX.height / 2;
      const x2 = b.x;
      const y2 = b.y + BOX.height / 2;
      const bend = Math.max((x2 - x1) / 2, 20);
      const touches = data.focus && (e.source === data.focus || e.target === data.focus);
      root.append(svg("path", { d: `M${x1},${y1} C${x1 + bend},${y1} ${x2 - bend},${y2} ${x2},${y2}`,
        class: touches ? "edge near" : "edge", "data-testid": "lineage-edge",
        "data-source": e.source, "data-target": e.target }));
    }
    for (const n of data.nodes) {
      const p = place.get(n.id);
      const g = svg("g", { class: `node kind-${n.kind}${n.id === data.focus ? " focus" : ""}`,
        transform: `translate(${p.x},${p.y})`, tabindex: 0, role: "button",
        "data-testid": "lineage-node", "data-node-id": n.id, "data-kind": n.kind });
      g.append(svg("rect", { width: BOX.width, height: BOX.height, rx: 5 }));
      const label = n.label || n.name;
      g.append(svg("text", { x: 8, y: 18 }, label.length > 21 ? `${label.slice(0, 20)}…` : label));
      g.append(svg("title", {}, `${n.id} (click: focus; double-click: open its page)`));
      g.addEventListener("click", () => onFocus(n.id));
      g.addEventListener("dblclick", () => {
        if (n.url) window.location.hash = n.url;
      });
      g.addEventListener("keydown", (event) => {
        if (event.key === "Enter") onFocus(n.id);
      });
      root.append(g);
    }
    return root;
  }

  async function lineagePage(view, _, q) {
    const node = q.get("node");
    const depth = q.get("depth") || "";
    const data = await api(`/lineage${query({ node, depth })}`);
    const focus = data.nodes.find((n) => n.id === data.focus);
    const go = (id) => {
      window.location.hash = `#/lineage${query({ node: id, depth })}`;
    };
    const depthSelect = el("select", { testid: "lineage-depth",
      onchange: (event) => {
        window.location.hash = `#/lineage${query({ node, depth: event.target.value })}`;
      } }, ["", "1", "2", "3", "5", "10"].map((d) => el("option", { value: d }, d ? `depth ${d}` : "default depth")));
    depthSelect.value = depth;
    const upstream = focus ? data.edges.filter((e) => e.target === focus.id).map((e) => e.source) : [];
    const downstream = focus ? data.edges.filter((e) => e.source === focus.id).map((e) => e.target) : [];
    const nodeLinks = (ids) => ids.length ? ids.map((id, i) => [i ? ", " : "",
      link(`#/lineage${query({ node: id, depth })}`, id)]) : "–";
    UI.fill(view, el("h1", {}, "Lineage"),
      el("p", { class: "toolbar" },
        focus ? ["Focused on ", el("strong", { testid: "lineage-focus" }, focus.id), " · ",
          focus.url ? link(focus.url, "open its page", "lineage-open") : null, " · ",
          link("#/lineage", "whole graph")] : "The whole graph. Click a node to focus on it. ",
        " ", depthSelect),
      focus ? el("p", { class: "small" }, "Upstream: ", nodeLinks(upstream), el("br"),
        "Downstream: ", nodeLinks(downstream)) : null,
      data.hidden ? el("p", { class: "banner warn" },
        `${data.hidden} node(s) your token may not read are left out.`) : null,
      data.nodes.length ? el("div", { class: "scroll" }, graph(data, go)) : empty("No lineage yet."));
  }

  // --- duplicates --------------------------------------------------------------------------

  function pairCard(p) {
    return el("div", { class: "card pair", testid: "duplicate-pair", "data-a": p.a, "data-b": p.b },
      el("div", { class: "pair-text" },
        el("h3", {}, link(p.a_url, p.a), " ≈ ", link(p.b_url, p.b), " ",
          badge(p.relation, `relation-${p.relation}`, "relation")),
        el("p", { testid: "evidence" }, p.evidence),
        el("p", { class: "small" }, `correlation ${num(p.correlation)} · equal on ` +
          `${percent(p.equal_share)} · b ≈ ${num(p.slope)}·a + ${num(p.intercept)} · ` +
          `${num(p.rows)} rows of ${p.entity}`)),
      Charts.scatter(p.sample || [], { fit: { slope: p.slope, intercept: p.intercept },
        testid: "pair-scatter" }));
  }

  async function duplicatesPage(view) {
    const status = el("p", { testid: "scan-status" });
    const progress = el("progress", { testid: "scan-progress", max: 1, value: 0 });
    const errors = el("div");
    const pairs = el("div", { testid: "duplicate-pairs" });
    const minimum = el("input", { type: "number", min: 0.5, max: 1, step: 0.01, value: 0.98,
      testid: "scan-min-correlation" });
    const button = el("button", { type: "button", testid: "scan-start", onclick: start },
      "Start scan");
    let polling = false;

    function show(scan) {
      const running = scan.state === "running";
      button.disabled = running;
      progress.max = Math.max(scan.total || 1, 1);
      progress.value = scan.state === "done" ? progress.max : scan.done || 0;
      progress.dataset.state = scan.state;
      status.dataset.state = scan.state;
      status.textContent = {
        none: "No scan has run yet.",
        running: `Scanning: ${scan.phase || ""} ${scan.done || 0} of ${scan.total || "?"}`,
        done: `Scan of ${num(scan.features)} features finished ${when(scan.finished_at)} ` +
          `(registry v${scan.registry_version}): ${scan.pairs.length} pair(s).`,
        failed: `The scan failed: ${scan.error}`,
      }[scan.state] || scan.state;
      if (scan.state === "done" && current !== null && scan.registry_version < current) {
        status.append(el("span", { class: "badge late", testid: "scan-stale" },
          `stale: the registry is at v${current} now; scan again`));
      }
      pairs.replaceChildren(...(scan.pairs || []).map(pairCard));
      if ((scan.skipped || []).length) {
        pairs.append(el("details", { testid: "scan-skipped" },
          el("summary", {}, `${scan.skipped.length} view(s) left out`),
          el("ul", {}, scan.skipped.map((s) => el("li", {}, typeof s === "string" ? s : JSON.stringify(s))))));
      }
      if (scan.state === "done" && !scan.pairs.length) {
        pairs.append(empty("No two features of different views carry the same values."));
      }
      if (running && !polling) poll();
    }

    async function poll() {
      polling = true;
      while (view.isConnected) {
        await new Promise((resolve) => window.setTimeout(resolve, 400));
        if (!view.isConnected) break;
        try {
          const scan = await api("/duplicates");
          polling = scan.state === "running";
          show(scan);
        } catch (failure) {
          errors.replaceChildren(UI.banner(failure));
          polling = false;
        }
        if (!polling) break;
      }
      polling = false;
    }

    async function start() {
      errors.replaceChildren();
      try {
        show(await api("/duplicates", { method: "POST",
          body: { min_correlation: Number(minimum.value) } }));
      } catch (failure) {
        errors.replaceChildren(UI.banner(failure));
      }
    }

    const [scan, overview] = await Promise.all([api("/duplicates"), api("/overview")]);
    const current = overview.registry_version;
    UI.fill(view, el("h1", {}, "Duplicate features"),
      el("p", {}, "Features of different views compared by their values on a sample of " +
        "entity rows over the same time range: reuse one instead of writing it again."),
      el("p", { class: "toolbar" }, button, " minimum correlation ", minimum, " ", progress),
      errors, status, pairs);
    show(scan);
  }

  UI.route(/^#\/lineage$/, lineagePage, "lineage");
  UI.route(/^#\/duplicates$/, duplicatesPage, "duplicates");
})();
