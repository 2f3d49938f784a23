/* Parity UI pages of the model side: the model list, a model (versions, metrics, signature,
   lineage, the alias timeline and "which version was it on date D"), rollouts and a rollout
   (phase, weights, gates, history, and the action buttons; it refreshes itself while active). */
"use strict";

(() => {
  const { el, link, badge, table, facts, section, empty, when, num, api, query } = UI;
  const ACTIVE = ["active", "paused"];
  const ACTIONS = ["pause", "resume", "promote", "abort"];
  const BY_STATUS = { pause: ["active"], resume: ["paused"], promote: ACTIVE, abort: ACTIVE };
  const modelUrl = (m) => `#/model/${encodeURIComponent(m)}`;

  function aliasBadges(aliases) {
    const entries = Object.entries(aliases || {});
    if (!entries.length) return "–";
    return el("span", { testid: "aliases" }, entries.map(([a, v]) =>
      badge(`@${a} → v${v}`, "alias")));
  }

  async function modelsPage(view) {
    const data = await api("/models");
    UI.fill(view, el("h1", {}, "Models"),
      data.models.length ? table([
        ["Model", (m) => link(m.url || modelUrl(m.name), m.name)],
        ["Versions", (m) => num(m.versions)], ["Latest", (m) => `v${m.latest}`],
        ["Aliases", (m) => aliasBadges(m.aliases)],
        ["Rollout", (m) => (m.active_rollout ? link(`#/rollout/${encodeURIComponent(m.name)}`,
          m.active_rollout) : "–")],
        ["Updated", (m) => when(m.updated_at)]], data.models, "models", "model-row")
        : empty("No model is registered."));
  }

  // --- a model -----------------------------------------------------------------------------

  function keyValues(map) {
    const entries = Object.entries(map || {});
    if (!entries.length) return "–";
    return el("span", { class: "small" }, entries.map(([k, v], i) =>
      [i ? ", " : "", `${k} ${typeof v === "number" ? num(v) : JSON.stringify(v)}`]));
  }

  function signature(sig) {
    if (!sig) return "–";
    const part = (cols) => (cols || []).map((c) => `${c.name}: ${c.dtype}`).join(", ") || "–";
    return el("span", { class: "small" }, `in (${part(sig.inputs)}) → out (${part(sig.outputs)})`);
  }

  function lineageCell(l) {
    if (!l) return "–";
    const parts = [];
    if (l.dataset) parts.push(link(`#/lineage${query({ node: `dataset:${l.dataset}` })}`, l.dataset));
    if (l.feature_service) {
      parts.push(link(`#/service/${encodeURIComponent(l.feature_service)}`, l.feature_service));
    }
    if (l.job) parts.push(typeof l.job === "object" ? `job ${l.job.name || ""} #${l.job.id}` : `job ${l.job}`);
    if (l.training_fingerprint) parts.push(el("code", {}, String(l.training_fingerprint).slice(0, 10)));
    return el("span", { class: "small" }, parts.map((p, i) => [i ? " · " : "", p]));
  }

  function timelineChart(model, aliases, at) {
    const times = [...aliases.timeline.flatMap((t) => [t.start, t.end]),
      ...aliases.events.map((e) => e.at)].filter(Boolean).map((t) => Date.parse(t));
    if (!times.length) return empty("No alias was ever set.");
    let from = Math.min(...times);
    let to = Math.max(...times);
    const margin = Math.max((to - from) * 0.04, 3600e3);
    from -= margin;
    to += margin;
    const names = [...new Set(aliases.timeline.map((t) => t.alias))].sort();
    const lanes = names.map((alias) => ({ alias, segments: aliases.timeline
      .filter((t) => t.alias === alias && t.version !== null)
      .map((t) => ({ start: Date.parse(t.start), end: t.end ? Date.parse(t.end) : to,
        version: t.version, reason: t.reason })) }));
    const marks = aliases.events.map((e) => ({ at: Date.parse(e.at),
      cls: e.kind === "rollback" ? "rollback" : "event",
      label: `${when(e.at)} @${e.alias} ${e.kind}: v${e.previous ?? "–"} → v${e.version ?? "–"}` +
        (e.reason ? ` (${e.reason})` : "") }));
    return Charts.timeline(lanes, marks, { from, to, at, width: 1180 });
  }

  function eventsTable(events) {
    return table([["When", (e) => when(e.at)], ["Alias", (e) => `@${e.alias}`],
      ["Event", (e) => badge(e.kind, `event-${e.kind}`)],
      ["Version", (e) => `v${e.previous ?? "–"} → v${e.version ?? "–"}`],
      ["Who", (e) => e.actor || "–"], ["Why", (e) => e.reason || ""]],
    [...events].reverse(), "alias-events", "alias-event");
  }

  function datePicker(model, holder, chartHolder, aliases) {
    const date = el("input", { type: "date", testid: "alias-date" });
    const time = el("input", { type: "time", testid: "alias-time", value: "12:00" });
    const answer = el("span", { testid: "alias-at" });
    async function ask() {
      if (!date.value) return;
      const at = `${date.value}T${time.value || "12:00"}:00Z`;
      try {
        const data = await api(`/models/${encodeURIComponent(model)}/aliases${query({ at })}`);
        const said = Object.entries(data.at_versions || {}).map(([a, v]) =>
          `@${a}: ${v === null ? "none" : `v${v}`}`);
        answer.textContent = `On ${when(data.at || at)}: ${said.join(", ") || "no alias"}`;
        chartHolder.replaceChildren(timelineChart(model, aliases, Date.parse(at)));
      } catch (failure) {
        answer.replaceChildren(UI.banner(failure));
      }
    }
    date.addEventListener("change", ask);
    time.addEventListener("change", ask);
    holder.replaceChildren("Which version was it on ", date, " at ", time, " UTC? ", answer);
  }

  async function modelPage(view, [name], q) {
    const [model, aliases, rollouts] = await Promise.all([api(`/models/${encodeURIComponent(name)}`),
      api(`/models/${encodeURIComponent(name)}/aliases`), api("/rollouts")]);
    const hasRollout = rollouts.rollouts.some((r) => r.model === name);
    const newest = Math.max(...model.versions.map((v) => v.version));
    const node = model.aliases.champion !== undefined ? `alias:${name}@champion`
      : `model_version:${name}/${newest}`; // a model with no champion: its newest version
    const chart = el("div", { class: "scroll" }, timelineChart(name, aliases, null));
    const picker = el("p", { class: "toolbar" });
    datePicker(name, picker, chart, aliases);
    UI.fill(view, el("h1", {}, `Model ${model.name} `, aliasBadges(model.aliases)),
      el("p", {}, link(`#/monitoring/${encodeURIComponent(name)}`, "monitoring"), " · ",
        hasRollout ? [link(`#/rollout/${encodeURIComponent(name)}`, "rollout"), " · "] : null,
        link(`#/lineage${query({ node })}`, "lineage")),
      section("Alias timeline", chart, picker, eventsTable(aliases.events)),
      section("Versions", table([
        ["Version", (v) => el("span", {}, `v${v.version}`, v.deleted ? badge("deleted", "muted") : null)],
        ["Registered", (v) => when(v.registered_at)], ["Flavor", (v) => v.flavor],
        ["Aliases", (v) => (v.aliases || []).map((a) => badge(`@${a}`, "alias"))],
        ["Metrics", (v) => keyValues(v.metrics)], ["Signature", (v) => signature(v.signature)],
        ["Lineage", (v) => lineageCell(v.lineage)], ["Description", (v) => v.description || ""]],
      [...model.versions].reverse(), "model-versions", "model-version-row", (v) => ({
        "data-version": v.version, class: String(v.version) === q.get("version") ? "selected" : null,
      }))));
    const chosen = view.querySelector("tr.selected");
    if (chosen) chosen.scrollIntoView({ block: "center" });
  }

  // --- rollouts ----------------------------------------------------------------------------

  const rolloutUrl = (r) => `#/rollout/${encodeURIComponent(r.model)}${query({ id: r.id })}`;

  async function rolloutsPage(view) {
    const data = await api("/rollouts");
    UI.fill(view, el("h1", {}, "Rollouts"),
      data.rollouts.length ? table([
        ["Rollout", (r) => link(r.url || rolloutUrl(r), r.id)], ["Model", (r) => r.model],
        ["Definition", (r) => r.definition], ["Status", (r) => badge(r.status, `status-${r.status}`)],
        ["Phase", (r) => `${r.phase} (step ${r.step + 1} of ${r.steps})`],
        ["Versions", (r) => `v${r.candidate} against v${r.champion}`],
        ["Candidate weight", (r) => `${num(r.candidate_weight)} %`],
        ["Started", (r) => when(r.started_at)], ["Updated", (r) => when(r.updated_at)]],
      data.rollouts, "rollouts", "rollout-row") : empty("No rollout has run."));
  }

  function gatesTable(gates, testid) {
    if (!gates || !gates.length) return empty("No gates.");
    const verdict = (g) => (g.passed === true ? badge("pass", "ok")
      : g.passed === false ? badge("fail", "late") : badge("pending", "muted"));
    return table([["Gate", (g) => el("div", {}, g.name, g.op ? el("div", { class: "small muted" }, g.op) : null)],
      ["Value", (g) => num(g.value)],
      ["Champion", (g) => (g.champion_value === undefined ? "–" : num(g.champion_value))],
      ["Threshold", (g) => num(g.threshold)], ["Samples", (g) => keyValues(
        typeof g.samples === "object" ? g.samples : { rows: g.samples })],
      ["Verdict", verdict], ["Why", (g) => g.reason || ""]], gates, testid, "gate-row");
  }

  function stepsList(r) {
    return el("ol", { class: "steps", testid: "rollout-steps" }, r.steps.map((s) =>
      el("li", { class: s.current ? "current" : s.done ? "done" : "", "data-index": s.index },
        `${s.kind} ${num(s.weight)} %`, s.mirror ? ` (mirror ${num(s.mirror)} %)` : "",
        s.min_seconds ? `, ≥ ${UI.duration(s.min_seconds)}` : "")));
  }

  /* The decisions, newest first; with `allChecks` off, only the newest of the routine
     checks (a rollout checks its gates every interval) beside every other event. */
  function decisions(r, allChecks, onToggle) {
    const newest = [...r.history].reverse();
    const latestCheck = newest.find((h) => h.kind === "check");
    const rows = allChecks ? newest : newest.filter((h) => h.kind !== "check" || h === latestCheck);
    const toggle = el("input", { type: "checkbox", testid: "show-checks",
      onchange: (event) => onToggle(event.target.checked) });
    toggle.checked = allChecks;
    return el("div", {},
      el("label", { class: "small" }, toggle, ` show every check (${r.history.length} events)`),
      rows.length ? table([["When", (h) => when(h.at)],
        ["Event", (h) => badge(h.kind, `event-${h.kind}`)], ["Step", (h) => h.step + 1],
        ["Who", (h) => h.actor || "–"], ["Why", (h) => whyWithGates(h)]],
      rows, "rollout-history", "history-row") : empty("No decision yet."));
  }

  function rolloutBody(r, allChecks, onToggle) {
    const current = r.steps.find((s) => s.current);
    return el("div", { testid: "rollout-body" },
      el("h1", {}, `Rollout ${r.id} of `, link(modelUrl(r.model), r.model), " ",
        badge(r.status, `status-${r.status}`, "rollout-status")),
      facts([["Definition", r.definition], ["Versions", `candidate v${r.candidate} against ` +
        `champion v${r.champion}`], ["Phase", el("span", { testid: "rollout-phase" }, r.phase)],
      ["Step", el("span", { testid: "rollout-step", "data-step": r.step },
        `${r.step + 1} of ${r.steps.length}${current ? ` (${current.kind})` : ""}`)],
      ["Mirrored", `${num(r.mirror_percent)} %`],
      ["Failed checks", r.failure_limit !== undefined
        ? `${r.failures} of ${r.failure_limit} (${r.failure_mode})` : undefined],
      ["Last check", r.checked_at !== undefined ? when(r.checked_at) : undefined],
      ["Why", r.reason || undefined]]),
      Charts.weights(r.candidate_weight, r.champion_weight),
      stepsList(r),
      section("Gates", gatesTable(r.gates, "gates")),
      section("Decisions", decisions(r, allChecks, onToggle)));
  }

  /* A decision's reason, and the gates it checked (folded). */
  function whyWithGates(h) {
    if (!h.gates || !h.gates.length) return h.reason || "";
    return el("div", {}, h.reason || "", el("details", {},
      el("summary", {}, `${h.gates.length} gate(s)`), gatesTable(h.gates)));
  }

  function actionBar(model, r, message, onDone) {
    const who = UI.who() || {};
    // `actions`: what the state allows and this caller may. A caller who may not act still
    // sees the buttons the state allows, marked, so pressing one shows the server's refusal.
    const granted = ACTIONS.filter((a) => r.actions && r.actions[a]);
    const allowed = granted.length ? granted
      : ACTIONS.filter((a) => BY_STATUS[a].includes(r.status));
    if (!allowed.length) return null;
    const reason = el("input", { type: "text", placeholder: "reason (recorded)", testid: "action-reason",
      size: 32 });
    const press = async (action) => {
      message.replaceChildren();
      try {
        const after = await api(`/rollouts/${encodeURIComponent(model)}/${action}`,
          { method: "POST", body: { reason: reason.value } });
        message.replaceChildren(el("p", { class: "banner ok" }, `${action}: done, now ${after.status}`));
        onDone(after);
      } catch (failure) {
        if (failure.status === 401) return UI.failed(message, failure);
        message.replaceChildren(UI.banner(failure));
      }
    };
    const note = granted.length ? null : el("p", { class: "small muted", testid: "action-note" },
      who.secured ? "Your token may not act on this rollout (it needs rollouts:admin): the " +
        "server will refuse." : "Actions are off in this UI (parity ui --enable-actions): " +
        "the server will refuse them.");
    return el("div", { class: "actions", testid: "rollout-actions" },
      allowed.map((a) => el("button", { type: "button", class: `action ${a}${granted.length ? "" : " refused"}`,
        testid: `action-${a}`,
        onclick: () => press(a) }, a[0].toUpperCase() + a.slice(1))), " ", reason, note);
  }

  async function rolloutPage(view, [model], q) {
    const path = `/rollouts/${encodeURIComponent(model)}${query({ id: q.get("id") })}`;
    const message = el("div", { testid: "action-message" });
    const body = el("div");
    const bar = el("div");
    const refreshed = el("p", { class: "small muted", testid: "refreshed" });
    let last = null;
    let barKey = null;
    let allChecks = false;
    const show = (r) => {
      last = r;
      body.replaceChildren(rolloutBody(r, allChecks, (on) => {
        allChecks = on;
        show(last);
      }));
      const key = JSON.stringify(r.actions || {});
      if (key !== barKey) { // rebuilt only when the allowed actions change (keeps the reason)
        barKey = key;
        bar.replaceChildren(actionBar(model, r, message, show) || "");
      }
      refreshed.textContent = ACTIVE.includes(r.status)
        ? `live: refreshes every 2 s (last ${new Date().toISOString().slice(11, 19)} UTC)` : "";
    };
    show(await api(path));
    UI.fill(view, bar, message, body, refreshed);
    UI.every(2000, async () => {
      if (!last || !ACTIVE.includes(last.status)) return;
      try {
        show(await api(path));
      } catch (failure) {
        refreshed.replaceChildren(UI.banner(failure));
      }
    }, view);
  }

  UI.route(/^#\/models$/, modelsPage, "models");
  UI.route(/^#\/model\/([^/]+)$/, modelPage, "models");
  UI.route(/^#\/rollouts$/, rolloutsPage, "rollouts");
  UI.route(/^#\/rollout\/([^/]+)$/, rolloutPage, "rollouts");
})();
