// Audit: the access log (GET /audit), newest first, filtered by person, key, action, result and
// time, paged with the API's cursor.
import { getJSON } from "../api.js";
import { busy, clear, date, field, h, num } from "../dom.js";
import { problemView } from "../problem.js";

const PAGE = 25;

const ACTIONS = [
  "enroll", "replace", "verify", "identify", "delete", "export", "suspend", "reactivate", "person_update",
  "people_sync", "key_create", "key_revoke", "model_activate", "calibrate", "audit_purge",
];

// result -> badge tone
const TONES = { ok: "ok", match: "ok", done: "ok", no_match: "warn", unknown: "warn", ambiguous: "warn", unchanged: "", suspended: "bad", expired: "bad", failed: "bad" };

/** A datetime-local value (the browser's zone) as ISO 8601 with its offset, or "". */
function isoFromLocal(value) {
  if (!value) return "";
  const d = new Date(value);
  return Number.isNaN(d.getTime()) ? "" : d.toISOString();
}

function detailText(detail) {
  const entries = Object.entries(detail || {});
  if (!entries.length) return "";
  return entries
    .map(([k, v]) => `${k}: ${typeof v === "object" && v !== null ? JSON.stringify(v) : v}`)
    .join(" · ");
}

export function auditView(ctx) {
  let cursors = [null]; // cursor of each page shown so far; the last is the current page's
  let next = null;
  let offset = 0;

  const [personField, person] = field("Person", h("input", { type: "text", autocomplete: "off", spellcheck: "false", placeholder: "person id" }));
  const key = h("select", {}, h("option", { value: "" }, "any key"));
  const [keyField] = field("Key", key);
  const action = h("select", {}, h("option", { value: "" }, "any action"), ACTIONS.map((a) => h("option", { value: a }, a.replace(/_/g, " "))));
  const [actionField] = field("Action", action);
  const [resultField, result] = field("Result", h("input", { type: "text", autocomplete: "off", spellcheck: "false", placeholder: "ok, match, no_match, suspended…" }));
  const [fromField, from] = field("From", h("input", { type: "datetime-local", step: 1 }), "included; your time zone");
  const [toField, to] = field("To", h("input", { type: "datetime-local", step: 1 }), "not included; your time zone");

  const apply = h("button", { type: "submit" }, "Apply");
  const reset = h("button", { type: "reset", class: "secondary" }, "Reset");
  const form = h(
    "form",
    { class: "card audit-log", novalidate: true },
    h("div", { class: "row fields" }, personField, keyField, actionField, resultField),
    h("div", { class: "row fields" }, fromField, toField),
    h("div", { class: "row" }, apply, reset),
  );

  const out = h("div", { "aria-live": "polite" });
  const body = h("tbody");
  const table = h(
    "table",
    { class: "data audit" },
    h("thead", {}, h("tr", {}, ["When", "Action", "Person", "Key", "Result", "Score", "Model", "Detail"].map((c) => h("th", { scope: "col" }, c)))),
    body,
  );
  const status = h("p", { class: "note audit-status", "aria-live": "polite" });
  const newer = h("button", { type: "button", class: "secondary", onclick: () => go(-1) }, "← Newer");
  const older = h("button", { type: "button", class: "secondary", onclick: () => go(1) }, "Older →");
  const pager = h("div", { class: "row pager" }, newer, status, older);

  function query(cursor) {
    const p = new URLSearchParams({ limit: String(PAGE) });
    const pid = person.value.trim();
    if (pid) p.set("person_id", pid);
    if (key.value) p.set("key_id", key.value);
    if (action.value) p.set("action", action.value);
    const res = result.value.trim();
    if (res) p.set("result", res);
    const since = isoFromLocal(from.value);
    if (since) p.set("from", since);
    const until = isoFromLocal(to.value);
    if (until) p.set("to", until);
    if (cursor !== null) p.set("cursor", String(cursor));
    return `/audit?${p}`;
  }

  async function load(cursor) {
    let page;
    try {
      page = await getJSON(query(cursor));
    } catch (err) {
      clear(out, problemView(err));
      return false;
    }
    out.replaceChildren();
    next = page.next_cursor;
    body.replaceChildren(...page.items.map(row));
    if (!page.items.length) {
      body.append(h("tr", {}, h("td", { colspan: 8, class: "empty" }, offset ? "No older rows." : "No row matches these filters.")));
    }
    status.textContent = page.items.length ? `${offset + 1}–${offset + page.items.length}` : "";
    newer.disabled = cursors.length <= 1;
    older.disabled = next === null;
    return true;
  }

  function row(r) {
    const tone = TONES[r.result] ?? "";
    return h(
      "tr",
      { dataset: { id: String(r.id) } },
      h("td", {}, h("time", { datetime: r.at }, date(r.at))),
      h("td", {}, r.action.replace(/_/g, " ")),
      h("td", {}, r.person_id ? h("code", {}, r.person_id) : "–"),
      h("td", {}, r.key_name, r.key_id !== null ? h("small", { class: "hint" }, ` #${r.key_id}`) : null),
      h("td", {}, h("span", { class: `badge ${tone}` }, r.result.replace(/_/g, " "))),
      h("td", {}, r.score === null ? "–" : num(r.score)),
      h("td", {}, r.model_version || "–"),
      h("td", {}, h("small", {}, detailText(r.detail))),
    );
  }

  async function go(step) {
    if (step > 0 && next !== null) {
      offset += body.children.length;
      cursors.push(next);
    } else if (step < 0 && cursors.length > 1) {
      cursors.pop();
      offset = Math.max(0, offset - PAGE);
    } else {
      return;
    }
    await load(cursors[cursors.length - 1]);
  }

  async function first() {
    cursors = [null];
    offset = 0;
    await load(null);
  }

  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    busy(apply, "Loading…", first);
  });
  form.addEventListener("reset", () => setTimeout(first, 0));

  async function loadKeys() {
    try {
      const keys = await getJSON("/keys");
      const chosen = key.value;
      key.replaceChildren(
        h("option", { value: "" }, "any key"),
        keys.map((k) => h("option", { value: String(k.id) }, `${k.name} (#${k.id}${k.revoked_at ? ", revoked" : ""})`)),
      );
      key.value = chosen;
    } catch {
      // the list of keys only helps to filter; the log itself still loads
    }
  }

  const el = h(
    "div",
    { class: "view-body" },
    form,
    h(
      "div",
      { class: "card audit-log" },
      out,
      h("div", { class: "scroll" }, table),
      pager,
      h("p", { class: "note" }, "Rows older than the retention (FACEGATE_AUDIT_RETENTION_DAYS) are purged; each purge is a row of its own."),
    ),
  );
  return {
    title: "Audit",
    el,
    show: () => {
      loadKeys();
      load(cursors[cursors.length - 1]);
    },
    hide: () => {},
  };
}
