/* Parity UI pages of the feature side: overview, catalog search, entity / view / service /
   feature pages, registry history. Data from /ui/api (catalog part); no markup from data. */
"use strict";

(() => {
  const { el, link, badge, table, facts, section, empty, when, duration, num, percent, tags, api,
    query } = UI;

  function featureUrl(view, name) {
    return `#/feature/${encodeURIComponent(view)}/${encodeURIComponent(name)}`;
  }

  function lineageLink(id, text) {
    return link(`#/lineage${query({ node: id })}`, text || "lineage", "lineage-link");
  }

  // --- overview ----------------------------------------------------------------------------

  async function overviewPage(view) {
    const data = await api("/overview");
    const tile = (label, value, href, testid) =>
      el("a", { class: "tile", href, testid }, el("span", { class: "big" }, num(value)), label);
    UI.fill(view, el("h1", {}, `Project ${data.project}`),
      data.registry_version === 0
        ? el("p", { class: "banner warn", testid: "nothing-applied" }, "Nothing is applied " +
          "yet: run parity apply in the feature repo, then reload.")
        : el("p", {}, `Registry version ${data.registry_version}. Search the catalog before ` +
          "writing a feature: it may exist under another name (see Duplicates)."),
      el("div", { class: "tiles", testid: "overview" },
        tile("entities", data.entities, "#/catalog?kind=entity"),
        tile("feature views", data.feature_views, "#/catalog?kind=view"),
        tile("features", data.features, "#/catalog?kind=feature"),
        tile("feature services", data.feature_services, "#/catalog?kind=service"),
        tile("models", data.models, "#/models"),
        tile("active rollouts", data.active_rollouts, "#/rollouts"),
        tile("firing alerts", data.firing_alerts, "#/monitoring", "firing-alerts")));
  }

  // --- catalog search ----------------------------------------------------------------------

  const KINDS = ["", "feature", "view", "service", "entity"];

  async function catalogPage(view, _, q) {
    const input = el("input", { type: "search", testid: "search-input", autofocus: true,
      placeholder: "Search name, description, tag or owner (owner:x, tag:k=v)", size: 60 });
    input.value = q.get("q") || "";
    const kind = el("select", { testid: "search-kind" },
      KINDS.map((k) => el("option", { value: k }, k || "every kind")));
    kind.value = KINDS.includes(q.get("kind")) ? q.get("kind") : "";
    const summary = el("p", { class: "summary", testid: "search-summary" });
    const results = el("ol", { class: "results", testid: "search-results" });
    const errors = el("div");
    let sequence = 0;
    let timer = null;

    async function run() {
      sequence += 1;
      const mine = sequence;
      const params = { q: input.value, kind: kind.value };
      history.replaceState(null, "", `#/catalog${query(params)}`);
      try {
        const data = await api(`/search${query({ ...params, limit: 100 })}`);
        if (mine !== sequence) return;
        errors.replaceChildren();
        summary.textContent = `${data.total} result${data.total === 1 ? "" : "s"}` +
          (data.total > data.results.length ? ` (first ${data.results.length} shown)` : "");
        results.replaceChildren(...data.results.map(resultRow));
        if (!data.results.length) results.append(empty("Nothing matches."));
      } catch (failure) {
        if (mine !== sequence) return;
        if (failure.status === 401) return UI.failed(errors, failure);
        errors.replaceChildren(UI.banner(failure));
      }
    }
    const later = () => {
      window.clearTimeout(timer);
      timer = window.setTimeout(run, 150);
    };
    input.addEventListener("input", later);
    kind.addEventListener("change", run);
    UI.fill(view, el("h1", {}, "Catalog"),
      el("div", { class: "searchbar" }, input, " ", kind), errors, summary, results);
    await run();
    input.focus();
  }

  function resultRow(r) {
    const name = r.kind === "feature" ? `${r.view}:${r.name}` : r.name;
    return el("li", { testid: "search-result", "data-kind": r.kind, "data-name": name },
      badge(r.kind, `kind-${r.kind}`), " ", link(r.url, name, "result-link"),
      r.dtype ? el("span", { class: "dtype" }, ` ${r.dtype}`) : null,
      r.description ? el("div", { class: "muted" }, r.description) : null,
      el("div", { class: "small" },
        r.owner ? `owner ${r.owner} ` : "", Object.keys(r.tags || {}).length ? tags(r.tags) : null,
        (r.matched || []).length ? el("span", { class: "muted" }, ` matched: ${r.matched.join(", ")}`)
          : null));
  }

  // --- entity / view / service / feature ---------------------------------------------------

  function nameLinks(names, make, testid) {
    if (!names || !names.length) return "–";
    return el("span", { testid }, names.map((n, i) => [i ? ", " : "", link(make(n), n)]));
  }

  const viewUrl = (n) => `#/view/${encodeURIComponent(n)}`;
  const serviceUrl = (n) => `#/service/${encodeURIComponent(n)}`;
  const entityUrl = (n) => `#/entity/${encodeURIComponent(n)}`;

  async function entityPage(view, [name]) {
    const e = await api(`/entities/${encodeURIComponent(name)}`);
    UI.fill(view, el("h1", {}, badge("entity", "kind-entity"), ` ${e.name}`),
      facts([["Join keys", e.join_keys.join(", ")], ["Value type", e.value_type],
        ["Description", e.description], ["Owner", e.owner], ["Tags", tags(e.tags)],
        ["Feature views", nameLinks(e.views, viewUrl, "entity-views")],
        ["Lineage", lineageLink(`entity:${e.name}`)]], "entity-facts"));
  }

  function sourceText(source) {
    if (!source) return "–";
    const where = source.path && source.path !== source.name ? ` (${source.path})` : "";
    const ts = source.timestamp_field ? `, time ${source.timestamp_field}` : "";
    return `${source.kind} ${source.name}${where}${ts}`;
  }

  function freshnessBadge(f) {
    if (!f) return badge("no freshness", "muted");
    const age = duration(f.age_seconds);
    const slo = f.slo_seconds === null || f.slo_seconds === undefined ? null : duration(f.slo_seconds);
    const text = {
      ok: `fresh: ${age} old, SLO ${slo}`,
      late: `late: ${age} old, SLO ${slo}`,
      no_data: "no data online",
      no_slo: f.age_seconds === null || f.age_seconds === undefined ? "no SLO" : `${age} old, no SLO`,
    }[f.status] || f.status;
    const node = badge(text, `fresh-${f.status}`, "freshness");
    node.dataset.status = f.status;
    node.title = `newest value at ${when(f.newest_value_at)}`;
    return node;
  }

  async function viewPage(view, [name]) {
    const v = await api(`/views/${encodeURIComponent(name)}`);
    UI.fill(view, el("h1", {}, badge(v.kind, "kind-view"), ` ${v.name} `,
      freshnessBadge(v.freshness)),
    facts([["Entities", nameLinks(v.entities, entityUrl)], ["Source", sourceText(v.source)],
      ["TTL", duration(v.ttl_seconds)], ["Description", v.description], ["Owner", v.owner],
      ["Tags", tags(v.tags)], ["Services", nameLinks(v.services, serviceUrl, "view-services")],
      ["Lineage", lineageLink(`view:${v.name}`)]]),
    section("Features", table([["Name", (f) => link(f.url || featureUrl(v.name, f.name), f.name)],
      ["Type", (f) => f.dtype], ["Description", (f) => f.description || ""]],
    v.features, "view-features")));
  }

  async function servicePage(view, [name]) {
    const s = await api(`/services/${encodeURIComponent(name)}`);
    UI.fill(view, el("h1", {}, badge("service", "kind-service"), ` ${s.name}`),
      facts([["Description", s.description], ["Owner", s.owner], ["Tags", tags(s.tags)],
        ["Lineage", lineageLink(`service:${s.name}`)],
        ["Consistency", link(`#/consistency/${encodeURIComponent(s.name)}`,
          "online/offline consistency")]]),
      section("Features", table([
        ["Feature", (f) => link(f.url || featureUrl(f.view, f.name), `${f.view}:${f.name}`)],
        ["Type", (f) => f.dtype]], s.features, "service-features")),
      section("Training datasets", s.datasets.length ? table([
        ["Dataset", (d) => lineageLink(`dataset:${d.name}`, d.name)],
        ["Created", (d) => when(d.created_at)], ["Rows", (d) => num(d.rows)]],
      s.datasets, "service-datasets") : empty("No dataset was built from this service.")),
      section("Model versions", modelVersions(s.model_versions)));
  }

  function modelVersions(versions, testid) {
    if (!versions || !versions.length) return empty("No model version uses it.");
    return el("ul", { testid: testid || "model-versions" }, versions.map((m) =>
      el("li", { testid: "model-version", "data-model": m.model, "data-version": m.version },
        link(m.url || `#/model/${encodeURIComponent(m.model)}`, `${m.model} v${m.version}`),
        ...(m.aliases || []).map((a) => [" ", badge(`@${a}`, "alias")]))));
  }

  function qualityTable(q) {
    if (!q) return empty("No quality numbers yet (they come from the monitored traffic).");
    return facts([["Since", when(q.since)], ["Rows", num(q.rows)],
      ["Null rate", percent(q.null_rate)], ["Inf rate", percent(q.inf_rate)],
      ["Out of range", percent(q.out_of_range_rate)], ["Unseen values", percent(q.unseen_rate)]],
    "quality");
  }

  function profileBlock(p) {
    if (!p) return empty("No profile (profiles come from a training dataset).");
    const bars = p.kind === "categorical" && (!p.bins || !p.bins.length)
      ? (p.top || []).map((t) => ({ label: String(t.value), value: t.share }))
      : (p.bins || []).map((b) => ({ label: b.label, value: b.share }));
    const quantiles = Object.entries(p.quantiles || {}).map(([k, v]) => `p${Number(k) * 100} ${num(v)}`);
    return el("div", { testid: "profile" },
      el("p", { class: "muted" }, `From dataset ${p.dataset || "–"}: ${num(p.rows)} rows, ` +
        `${percent(p.null_share)} null. ${quantiles.join(" · ")}`),
      Charts.bars(bars, { testid: "profile-histogram" }),
      p.top && p.top.length ? el("p", { class: "small" }, "Top values: ",
        p.top.map((t) => `${t.value} (${percent(t.share)})`).join(", ")) : null);
  }

  function usedBy(u) {
    return el("div", { class: "columns", testid: "used-by" },
      el("div", {}, el("h3", {}, "Services"), nameLinks(u.services, serviceUrl, "used-by-services")),
      el("div", {}, el("h3", {}, "Datasets"), u.datasets.length ? el("span", { testid: "used-by-datasets" },
        u.datasets.map((d, i) => [i ? ", " : "", lineageLink(`dataset:${d}`, d)])) : "–"),
      el("div", {}, el("h3", {}, "Model versions"), modelVersions(u.model_versions, "used-by-models")),
      el("div", {}, el("h3", {}, "Rollouts"), u.rollouts.length ? el("ul", { testid: "used-by-rollouts" },
        u.rollouts.map((r) => el("li", {}, link(r.url, `${r.model} ${r.id}`), " ",
          badge(r.status, `status-${r.status}`)))) : "–"));
  }

  async function featurePage(view, [viewName, name]) {
    const f = await api(`/features/${encodeURIComponent(viewName)}/${encodeURIComponent(name)}`);
    UI.fill(view, 
      el("h1", { testid: "feature-title" }, badge("feature", "kind-feature"),
        ` ${f.view}:${f.name} `, el("span", { class: "dtype" }, f.dtype), " ",
        freshnessBadge(f.freshness)),
      facts([["View", link(viewUrl(f.view), f.view)], ["Entities", nameLinks(f.entities, entityUrl)],
        ["Type", f.dtype], ["Source", sourceText(f.source)], ["TTL", duration(f.ttl_seconds)],
        ["Description", f.description], ["Owner", f.owner], ["Tags", tags(f.tags)],
        ["Lineage", lineageLink(`view:${f.view}`)]], "feature-facts"),
      section("Used by", usedBy(f.used_by)),
      section("Quality", qualityTable(f.quality)),
      section("Profile", profileBlock(f.profile)));
  }

  // --- registry history --------------------------------------------------------------------

  async function historyPage(view) {
    const data = await api("/registry/versions");
    UI.fill(view, el("h1", {}, "Registry history"),
      data.versions.length ? table([
        ["Version", (v) => link(`#/history/${v.version}`, `v${v.version}`)],
        ["When", (v) => when(v.created_at)], ["Who", (v) => v.actor || "–"],
        ["Message", (v) => v.message || ""],
        ["Changes", (v) => `+${v.added} ~${v.changed} −${v.removed}`],
        ["Fingerprint", (v) => el("code", {}, String(v.fingerprint || "").slice(0, 12))]],
      data.versions, "versions", "version-row") : empty("Nothing applied yet."));
  }

  function jsonText(value) {
    if (value === null || value === undefined) return "–";
    return typeof value === "string" ? value : JSON.stringify(value);
  }

  async function diffPage(view, [version]) {
    const d = await api(`/registry/versions/${encodeURIComponent(version)}`);
    const fields = (c) => (c.fields || []).length ? el("ul", { class: "fields" }, c.fields.map((f) =>
      el("li", {}, el("code", {}, f.field), ": ", el("del", {}, jsonText(f.old)), " → ",
        el("ins", {}, jsonText(f.new))))) : "";
    UI.fill(view, el("h1", {}, `Registry version ${d.version}`),
      facts([["When", when(d.created_at)], ["Who", d.actor], ["Message", d.message],
        ["Compared with", d.previous ? link(`#/history/${d.previous}`, `v${d.previous}`) : "nothing (first)"]]),
      section("Changes", d.changes.length ? table([["Kind", (c) => c.kind], ["Name", (c) => c.name],
        ["Action", (c) => badge(c.action, `action-${c.action}`)],
        ["Breaking", (c) => (c.breaking ? badge("breaking", "late") : "")], ["Fields", fields]],
      d.changes, "changes", "change-row") : empty("No change.")),
      el("p", {}, link("#/history", "← all versions")));
  }

  UI.route(/^#\/?$/, overviewPage);
  UI.route(/^#\/catalog$/, catalogPage, "catalog");
  UI.route(/^#\/entity\/([^/]+)$/, entityPage, "catalog");
  UI.route(/^#\/view\/([^/]+)$/, viewPage, "catalog");
  UI.route(/^#\/service\/([^/]+)$/, servicePage, "catalog");
  UI.route(/^#\/feature\/([^/]+)\/([^/]+)$/, featurePage, "catalog");
  UI.route(/^#\/history$/, historyPage, "history");
  UI.route(/^#\/history\/([^/]+)$/, diffPage, "history");

  window.CatalogPages = { freshnessBadge, modelVersions, lineageLink, featureUrl };
})();
