/* Parity UI core: DOM helpers, the JSON client of /ui/api (bearer token from sessionStorage),
   error banners, the hash router, the header and the sign-in page. The pages live in
   pages_*.js and register themselves with UI.route(). Text is only ever set with textContent.

   Adding a page: in a pages_*.js file write `async function myPage(view, params, query)` that
   fetches with `await UI.api("/path")` and fills `view` with `UI.fill(view, UI.el(...), ...)`;
   register it with `UI.route(/^#\/my\/([^/]+)$/, myPage, "navKey")`; a new file also goes in
   index.html (after app.js). A thrown ApiError becomes the page's banner (401: sign-in). */
"use strict";

const UI = (() => {
  const API = "/ui/api";
  const TOKEN = "parity.token";
  const routes = [];
  let generation = 0;
  let timers = [];
  let who = null;

  // --- DOM helpers -------------------------------------------------------------------------

  /* el("a", {href, class, testid, onclick}, child, "text", ...): an element; strings become
     text nodes, null/false children are skipped. */
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "testid") node.dataset.testid = value;
      else if (key === "class") node.className = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    append(node, children);
    return node;
  }

  function append(node, children) {
    for (const child of children.flat(Infinity)) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  /* Replace `node`'s children (null/false skipped, strings as text). */
  function fill(node, ...children) {
    node.replaceChildren();
    return append(node, children);
  }

  function link(href, text, testid) {
    return el("a", { href: href || null, testid }, text);
  }

  function badge(text, kind, testid) {
    return el("span", { class: `badge ${kind || ""}`, testid }, text);
  }

  /* A table: columns [[header, row => cell]]; rows []; rowAttrs(row) more attributes of a row. */
  function table(columns, rows, testid, rowTestid, rowAttrs) {
    const head = el("tr", {}, columns.map(([name]) => el("th", {}, name)));
    const body = rows.map((row) => el("tr", { testid: rowTestid, ...(rowAttrs ? rowAttrs(row) : {}) },
      columns.map(([, cell]) => el("td", {}, cell(row)))));
    return el("table", { testid }, el("thead", {}, head), el("tbody", {}, body));
  }

  /* A definition list of [label, value] pairs (values may be nodes). */
  function facts(pairs, testid) {
    return el("dl", { class: "facts", testid },
      pairs.filter(([, v]) => v !== undefined).flatMap(([k, v]) =>
        [el("dt", {}, k), el("dd", {}, v === null || v === "" ? "–" : v)]));
  }

  function section(title, ...children) {
    return el("section", { class: "card" }, el("h2", {}, title), ...children);
  }

  function empty(text) {
    return el("p", { class: "empty" }, text);
  }

  // --- formatting --------------------------------------------------------------------------

  function when(iso) {
    if (!iso) return "–";
    const d = new Date(iso);
    if (Number.isNaN(d.getTime())) return String(iso);
    return `${d.toISOString().slice(0, 16).replace("T", " ")} UTC`;
  }

  function duration(seconds) {
    if (seconds === null || seconds === undefined) return "–";
    const s = Math.abs(seconds);
    if (s < 120) return `${Math.round(seconds)} s`;
    if (s < 7200) return `${Math.round(seconds / 60)} min`;
    if (s < 172800) return `${Math.round(seconds / 3600)} h`;
    return `${Math.round(seconds / 86400)} d`;
  }

  function num(value) {
    if (value === null || value === undefined) return "–";
    if (typeof value !== "number") return String(value);
    return Charts.fmt(value);
  }

  function percent(value) {
    if (value === null || value === undefined || !Number.isFinite(value)) return "–";
    return `${Number((value * 100).toPrecision(3))} %`;
  }

  function tags(map) {
    const entries = Object.entries(map || {});
    if (!entries.length) return "–";
    return el("span", {}, entries.map(([k, v]) => badge(v ? `${k}=${v}` : k, "tag")));
  }

  // --- the JSON client ---------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  function token() {
    return sessionStorage.getItem(TOKEN);
  }

  async function api(path, options = {}) {
    const headers = { Accept: "application/json" };
    if (token()) headers.Authorization = `Bearer ${token()}`;
    const init = { method: options.method || "GET", headers };
    if (options.body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(options.body);
    }
    let response;
    try {
      response = await fetch(API + path, init);
    } catch (failure) {
      throw new ApiError(0, "network_error", `the server did not answer: ${failure.message}`);
    }
    const text = await response.text();
    let data = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch (failure) {
      data = null;
    }
    if (!response.ok) {
      const error = (data && data.error) || {};
      throw new ApiError(response.status, error.code || `http_${response.status}`,
        error.message || text || response.statusText);
    }
    return data;
  }

  function query(params) {
    const pairs = Object.entries(params).filter(([, v]) => v !== null && v !== undefined && v !== "");
    if (!pairs.length) return "";
    return "?" + pairs.map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`).join("&");
  }

  function banner(failure) {
    const code = failure.code || "error";
    return el("div", { class: "banner error", testid: "error-banner", role: "alert" },
      el("strong", {}, `${code}`), ` (${failure.status || "?"}): ${failure.message}`);
  }

  // --- the router --------------------------------------------------------------------------

  /* route(/^#\/model\/([^/?]+)$/, page): page(view, params, query) fills `view` (a <div>),
     params the decoded groups, query a URLSearchParams of the part after "?". */
  function route(pattern, page, nav) {
    routes.push({ pattern, page, nav });
  }

  /* Call `fn` every `ms` while `view` is on screen (it stops when the page changes). */
  function every(ms, fn, view) {
    const id = window.setInterval(() => {
      if (view && !view.isConnected) window.clearInterval(id);
      else fn();
    }, ms);
    timers.push(id);
    return id;
  }

  function current(gen) {
    return gen === generation;
  }

  async function render() {
    generation += 1;
    const gen = generation;
    timers.forEach((id) => window.clearInterval(id));
    timers = [];
    const hash = window.location.hash || "#/";
    const [path, search] = hash.split("?", 2);
    const main = document.getElementById("main");
    const found = routes.find((r) => r.pattern.test(path));
    markNav(found);
    const view = el("div", { class: "view", testid: "view" });
    main.replaceChildren(view);
    if (!found) {
      view.append(banner({ code: "not_found", status: 404, message: `no page ${hash}` }));
      return;
    }
    const params = path.match(found.pattern).slice(1).map(decodeURIComponent);
    view.append(el("p", { class: "loading", testid: "loading" }, "Loading…"));
    try {
      await found.page(view, params, new URLSearchParams(search || ""), gen);
    } catch (failure) {
      if (!current(gen)) return;
      failed(view, failure);
    } finally {
      const loading = view.querySelector("[data-testid=loading]");
      if (loading && current(gen)) loading.remove();
    }
  }

  /* A page's failure: 401 sends to the sign-in page saying why, anything else is a banner. */
  function failed(view, failure) {
    if (failure.status === 401) {
      const back = window.location.hash;
      window.location.hash = "#/login" + query({ why: failure.message, next: back });
      return;
    }
    view.querySelectorAll("[data-testid=loading]").forEach((n) => n.remove());
    view.prepend(banner(failure));
  }

  function markNav(found) {
    document.querySelectorAll("nav a").forEach((a) => {
      a.classList.toggle("active", Boolean(found && found.nav && a.dataset.nav === found.nav));
    });
  }

  // --- header and sign-in ------------------------------------------------------------------

  async function loadWho() {
    const box = document.getElementById("who");
    try {
      who = await api("/whoami");
    } catch (failure) {
      who = { secured: failure.status === 401, name: null, scopes: [], actions: false,
        project: null, failed: failure };
    }
    const parts = [];
    if (who.project) document.getElementById("project").textContent = who.project;
    if (who.secured && who.name) {
      parts.push(el("span", { testid: "whoami" }, `${who.name}`),
        el("span", { class: "scopes", testid: "scopes" }, who.scopes.join(" ")),
        el("button", { type: "button", class: "link", testid: "sign-out", onclick: signOut },
          "Sign out"));
    } else if (who.secured) {
      parts.push(link("#/login", "Sign in", "sign-in"));
    } else {
      parts.push(el("span", { testid: "whoami", class: "scopes" },
        who.actions ? "auth off · actions on" : "auth off · read-only"));
    }
    box.replaceChildren(...parts);
    return who;
  }

  function signOut() {
    sessionStorage.removeItem(TOKEN);
    loadWho();
    window.location.hash = "#/login";
  }

  async function loginPage(view, params, q) {
    view.replaceChildren();
    const why = q.get("why");
    const next = q.get("next") || "#/";
    const input = el("input", { type: "password", id: "token", testid: "token-input",
      autocomplete: "off", placeholder: "pt_…", size: 48 });
    const status = el("p", { testid: "login-status" });
    async function submit(event) {
      event.preventDefault();
      sessionStorage.setItem(TOKEN, input.value.trim());
      const me = await loadWho();
      if (me.failed) {
        sessionStorage.removeItem(TOKEN);
        status.replaceChildren(banner(me.failed));
        await loadWho();
        return;
      }
      window.location.hash = next.startsWith("#/login") ? "#/" : next;
    }
    view.append(section("Sign in",
      why ? el("p", { class: "banner warn", testid: "login-why" },
        `The server asked for a token: ${why}`) : null,
      who && !who.secured && !who.failed
        ? el("p", { class: "banner ok" }, "Authentication is off on this server: no token is needed.")
        : el("p", {}, "This server has authentication on. Paste an API token (created with " +
          "`parity auth token create`); it is kept in this tab only (sessionStorage)."),
      el("form", { onsubmit: submit, testid: "login-form" },
        el("label", { for: "token" }, "Token "), input, " ",
        el("button", { type: "submit", testid: "sign-in-button" }, "Sign in")),
      status));
  }

  function start() {
    route(/^#\/login$/, loginPage);
    window.addEventListener("hashchange", render);
    loadWho().then(render);
  }

  document.addEventListener("DOMContentLoaded", start);

  return {
    el, append, fill, link, badge, table, facts, section, empty, when, duration, num, percent, tags,
    api, query, banner, route, every, current, failed, ApiError,
    who: () => who,
  };
})();
