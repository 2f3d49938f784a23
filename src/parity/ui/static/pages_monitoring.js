/* Parity UI monitoring pages: the monitored models, a model's drift per column over time
   (with its threshold), delayed-label performance with coverage, trigger decisions and alerts,
   and a service's online/offline consistency (run in the background, with progress). */
"use strict";

(() => {
  const { el, link, badge, table, facts, section, empty, when, num, percent, api, query } = UI;
  const enc = encodeURIComponent;

  async function monitoringPage(view) {
    const data = await api("/monitoring");
    UI.fill(view, el("h1", {}, "Monitoring"),
      data.models.length ? table([
        ["Model", (m) => link(m.url || `#/monitoring/${enc(m.model)}`, m.model)],
        ["Monitor", (m) => m.monitor], ["Window", (m) => UI.duration(m.window_seconds)],
        ["Latest window", (m) => latestWindow(m.latest_window)], ["Columns", (m) => num(m.columns)],
        ["Drifted", (m) => (m.drifted_columns ? badge(`${m.drifted_columns} drifted`, "late")
          : badge("none drifted", "ok"))],
        ["Firing alerts", (m) => (m.firing_alerts ? badge(`${m.firing_alerts} firing`, "late") : "0")]],
      data.models, "monitored-models", "monitored-row") : empty("No model is monitored."));
  }

  /* The newest drift window: an ISO time, or (as the server sends it) an object with its end,
     its version and the share of drifted columns. */
  function latestWindow(w) {
    if (!w || typeof w !== "object") return when(w);
    return el("span", {}, `${when(w.window_end)} (v${w.version}) `,
      badge(`drift share ${percent(w.drift_share)}`, w.drifted ? "late" : "ok"));
  }

  function driftShare(share) {
    if (!share || !share.series || !share.series.length) return null;
    return driftColumn({ column: "dataset drift share", role: "dataset", test: "share of drifted columns",
      threshold: share.threshold, series: share.series }, "drift-share");
  }

  function driftColumn(c, testid) {
    const points = c.series.map((p) => ({ x: Date.parse(p.window_end), y: p.statistic,
      cls: p.drifted ? "drifted" : "" }));
    const drifted = c.series.filter((p) => p.drifted).length;
    const chart = Charts.line([{ name: c.column, points }],
      { threshold: c.threshold, testid: "drift-chart", width: 360, height: 160, yMin: 0 });
    return el("div", { class: "card chart-card", testid: testid || "drift-column", "data-column": c.column },
      el("h3", {}, `${c.column} `, badge(c.role, "muted"), " ",
        drifted ? badge(`drifted in ${drifted} of ${c.series.length}`, "late") : badge("no drift", "ok")),
      el("p", { class: "small muted" }, `${c.test}, threshold ${num(c.threshold)}`),
      chart);
  }

  function performanceBlock(perf) {
    if (!perf.series.length) return empty("No labelled windows yet.");
    return el("div", { class: "grid" }, perf.series.map((s) => {
      const at = (p) => Date.parse(p.window_end);
      const chart = Charts.line([
        { name: s.metric, points: s.points.map((p) => ({ x: at(p), y: p.value })) },
        { name: "label coverage", points: s.points.map((p) => ({ x: at(p), y: p.coverage })) }],
      { testid: "performance-chart", width: 360, height: 160 });
      const lastPoint = s.points[s.points.length - 1];
      return el("div", { class: "card chart-card", testid: "performance-metric", "data-metric": s.metric },
        el("h3", {}, s.metric), chart,
        lastPoint ? el("p", { class: "small" }, `latest ${num(lastPoint.value)} on ` +
          `${num(lastPoint.labelled)} labelled of ${num(lastPoint.predictions)} predictions ` +
          `(coverage ${percent(lastPoint.coverage)}${lastPoint.final ? ", final" : ", labels still arriving"})`)
          : null);
    }));
  }

  function jobText(job, status) {
    if (job === null || job === undefined) return "–";
    const name = typeof job === "object" ? `${job.name || "job"} #${job.id}` : String(job);
    return status ? `${name} (${status})` : name;
  }

  function triggersTable(t) {
    if (!t.decisions.length) return empty("No trigger decision yet.");
    return table([["When", (d) => when(d.at)], ["Policy", (d) => d.policy],
      ["Action", (d) => badge(d.action, `action-${d.action}`)],
      ["Reasons", (d) => (d.reasons || []).join("; ")],
      ["Job", (d) => jobText(d.job, d.job_status)]],
    [...t.decisions].reverse(), "trigger-decisions", "trigger-row");
  }

  function alertsBlock(a) {
    return el("div", {},
      a.statuses.length ? table([["Rule", (s) => s.rule], ["Signal", (s) => s.signal],
        ["State", (s) => (s.firing ? badge("firing", "late") : badge("ok", "ok"))],
        ["Streak", (s) => num(s.streak)], ["Last value", (s) => num(s.last_value)],
        ["Since", (s) => when(s.since)], ["Checked", (s) => when(s.last_at)]],
      a.statuses, "alert-statuses", "alert-row") : empty("No alert rule."),
      a.events.length ? el("details", {}, el("summary", {}, `${a.events.length} alert events`),
        table([["When", (e) => when(e.at)], ["Rule", (e) => e.rule],
          ["Event", (e) => badge(e.kind, `event-${e.kind}`)], ["Value", (e) => num(e.value)]],
        [...a.events].reverse(), "alert-events")) : null);
  }

  async function monitoredModelPage(view, [model]) {
    const base = `/monitoring/${enc(model)}`;
    const [drift, perf, triggers] = await Promise.all([api(`${base}/drift`),
      api(`${base}/performance`), api(`${base}/triggers`)]);
    const alerts = drift.monitor === null ? { statuses: [], events: [] } // no monitor: no rule
      : await api(`/alerts${query({ monitor: drift.monitor })}`); // (no monitor= reads them all)
    UI.fill(view, el("h1", {}, `Monitoring of `, link(`#/model/${enc(model)}`, model)),
      facts([["Monitor", drift.monitor]]),
      drift.truncated ? el("p", { class: "banner warn", testid: "drift-truncated" },
        "Only the newest windows are drawn: the older ones are left out.") : null,
      section("Drift per column", drift.columns.length
        ? el("div", { class: "grid", testid: "drift" }, driftShare(drift.drift_share),
          drift.columns.map((c) => driftColumn(c)))
        : empty("No drift run yet.")),
      section("Performance (delayed labels)", performanceBlock(perf)),
      section("Alerts", alertsBlock(alerts)),
      section("Retraining decisions", triggersTable(triggers)));
  }

  // --- consistency -------------------------------------------------------------------------

  /* [{hour, feature, rate}] -> one point per hour: the highest rate of any feature. */
  function worstPerHour(hours) {
    const worst = new Map();
    for (const h of hours) {
      const at = Date.parse(h.hour);
      if (h.rate !== null && h.rate !== undefined) worst.set(at, Math.max(worst.get(at) ?? 0, h.rate));
    }
    return [...worst.entries()].sort((a, b) => a[0] - b[0]).map(([x, y]) => ({ x, y }));
  }

  async function consistencyPage(view, [service]) {
    const path = `/consistency/${enc(service)}`;
    const status = el("p", { testid: "consistency-status" });
    const progress = el("progress", { testid: "consistency-progress", max: 1, value: 0 });
    const result = el("div", { testid: "consistency-result" });
    const errors = el("div");
    const button = el("button", { type: "button", testid: "consistency-run", onclick: run },
      "Run a check");
    let polling = false;

    function show(c) {
      button.disabled = c.state === "running";
      progress.max = Math.max(c.total || 1, 1);
      progress.value = c.state === "done" ? progress.max : c.done || 0;
      status.dataset.state = c.state;
      status.textContent = {
        none: "No check has run yet: it compares online values with the offline store's.",
        running: `Checking: ${c.phase || ""} ${c.done || 0} of ${c.total || "?"}`,
        done: `${num(c.rows)} rows from ${when(c.since)} to ${when(c.until)}, ` +
          `checked ${when(c.finished_at)}.`,
        failed: `The check failed: ${c.error}`,
      }[c.state] || c.state;
      if (c.message) status.append(el("span", { class: "muted" }, ` ${c.message}`));
      result.replaceChildren();
      if (c.features && c.features.length) {
        result.append(table([["Feature", (f) => f.feature], ["Compared", (f) => num(f.compared)],
          ["Mismatches", (f) => num(f.mismatches)], ["Rate", (f) => percent(f.rate)]],
        c.features, "consistency-features", "consistency-row"));
      }
      if (c.hours && c.hours.length) {
        result.append(el("h3", {}, "Mismatch rate per hour (the worst feature of each hour)"),
          Charts.line([{ name: "worst feature", points: worstPerHour(c.hours) }],
            { testid: "consistency-chart", yMin: 0 }));
      }
      if (c.state === "running" && !polling) poll();
    }

    async function poll() {
      polling = true;
      while (view.isConnected && polling) {
        await new Promise((resolve) => window.setTimeout(resolve, 400));
        try {
          const c = await api(path);
          polling = c.state === "running";
          show(c);
        } catch (failure) {
          errors.replaceChildren(UI.banner(failure));
          polling = false;
        }
      }
      polling = false;
    }

    async function run() {
      errors.replaceChildren();
      try {
        show(await api(path, { method: "POST", body: {} }));
      } catch (failure) {
        errors.replaceChildren(UI.banner(failure));
      }
    }

    const first = await api(path);
    UI.fill(view, el("h1", {}, "Consistency of ", link(`#/service/${enc(service)}`, service)),
      el("p", { class: "toolbar" }, button, " ", progress), errors, status, result);
    show(first);
  }

  UI.route(/^#\/monitoring$/, monitoringPage, "monitoring");
  UI.route(/^#\/monitoring\/([^/]+)$/, monitoredModelPage, "monitoring");
  UI.route(/^#\/consistency\/([^/]+)$/, consistencyPage, "monitoring");
})();
