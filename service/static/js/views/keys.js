// Keys (admin): list, create with scopes (the secret shown once, with a copy button), revoke with
// confirmation. The signed-in key is marked and offers no revoke button: a key cannot revoke itself.
import { getJSON, request } from "../api.js";
import { busy, date, field, h } from "../dom.js";
import { problemView } from "../problem.js";
import { resultArea, reveal } from "./common.js";

const SCOPES = [
  ["verify", "Verify and identify (a door terminal)"],
  ["enroll", "Enrol people (an enrolment desk)"],
  ["compare", "Compare two photos, nobody enrolled"],
  ["metrics", "Read /metrics (a Prometheus scraper)"],
  ["admin", "Everything, including people, keys and the model"],
];

export function keysView(ctx) {
  const myId = ctx.me.id;
  const [nameField, name] = field("Name", h("input", { type: "text", maxlength: "100", autocomplete: "off" }), "Who or what will use the key, for example “front door”.");
  const boxes = SCOPES.map(([scope, what]) =>
    h("label", { class: "check" }, h("input", { type: "checkbox", value: scope, name: "scope" }), h("span", {}, h("strong", {}, scope), ` — ${what}`)));
  const scopes = h("fieldset", { class: "scopes" }, h("legend", {}, "Scopes"), ...boxes);
  const submit = h("button", { type: "submit" }, "Create the key");
  const created = resultArea();
  const form = h("form", { class: "card", novalidate: true }, h("h2", {}, "New key"), nameField, scopes, h("div", { class: "row" }, submit), created);
  const list = h("section", { class: "card keys-list" }, h("h2", {}, "Keys"), h("p", { class: "note" }, "Loading…"));
  const status = resultArea();
  const dialog = confirmDialog();

  async function load() {
    try {
      const keys = await getJSON("/keys");
      list.replaceChildren(h("h2", {}, "Keys"), keysTable(keys));
    } catch (err) {
      list.replaceChildren(h("h2", {}, "Keys"), problemView(err));
    }
  }

  function keysTable(keys) {
    const rows = keys.map((k) => {
      const mine = k.id === myId;
      const revoked = Boolean(k.revoked_at);
      const action = revoked
        ? h("span", { class: "note" }, `revoked ${date(k.revoked_at)}`)
        : mine
          ? h("span", { class: "note" }, "in use by this console: sign in with another admin key to revoke it")
          : h("button", { type: "button", class: "danger small", onclick: () => revoke(k) }, "Revoke");
      return h(
        "tr",
        { class: `key${mine ? " mine" : ""}${revoked ? " revoked" : ""}`, dataset: { keyId: String(k.id) } },
        h("td", {}, h("strong", {}, k.name), mine ? [" ", h("span", { class: "badge ok" }, "this key")] : null, h("br"), h("small", {}, k.prefix)),
        h("td", {}, k.scopes.map((s) => h("span", { class: "chip" }, s))),
        h("td", {}, date(k.created_at), h("br"), h("small", {}, k.last_used_at ? `last used ${date(k.last_used_at)}` : "never used")),
        h("td", {}, action),
      );
    });
    return h("div", { class: "scroll" }, h("table", { class: "data keys" },
      h("thead", {}, h("tr", {}, h("th", {}, "Key"), h("th", {}, "Scopes"), h("th", {}, "Created"), h("th", {}, ""))),
      h("tbody", {}, rows)));
  }

  async function revoke(k) {
    if (!(await dialog.ask(k))) return;
    try {
      await request(`/keys/${k.id}`, { method: "DELETE" });
      status.replaceChildren(h("div", { class: "alert ok", role: "status" }, `The key “${k.name}” is revoked: it is refused from now on.`));
      ctx.toast(`Key “${k.name}” revoked`);
    } catch (err) {
      status.replaceChildren(problemView(err));
    }
    reveal(status);
    await load();
  }

  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const fail = (m) => created.replaceChildren(h("div", { class: "alert error", role: "alert" }, h("strong", { class: "alert-title" }, m)));
    const wanted = boxes.map((b) => b.querySelector("input")).filter((i) => i.checked).map((i) => i.value);
    if (!name.value.trim()) return fail("Enter a name for the key.");
    if (!wanted.length) return fail("Choose at least one scope.");
    await busy(submit, "Creating…", async () => {
      try {
        const resp = await request("/keys", { method: "POST", body: { name: name.value.trim(), scopes: wanted } });
        showSecret(created, await resp.json());
        name.value = "";
        for (const b of boxes) b.querySelector("input").checked = false;
        await load();
      } catch (err) {
        created.replaceChildren(problemView(err));
      }
    });
  });

  return {
    title: "API keys",
    el: h("div", { class: "view-body" }, status, form, list, dialog.el),
    show: load,
  };
}

function showSecret(out, key) {
  const secret = h("input", { type: "text", readonly: true, value: key.key, class: "secret", "aria-label": "the new key", spellcheck: "false" });
  const copied = h("small", { class: "hint", role: "status" });
  const copy = h("button", {
    type: "button",
    class: "secondary",
    onclick: async () => {
      secret.select();
      try {
        await navigator.clipboard.writeText(key.key);
        copied.textContent = "Copied.";
      } catch {
        copied.textContent = document.execCommand("copy") ? "Copied." : "Select the key and copy it by hand.";
      }
    },
  }, "Copy");
  out.replaceChildren(h("div", { class: "alert ok", role: "status" },
    h("strong", { class: "alert-title" }, `The key “${key.name}” is created (${key.scopes.join(", ")}).`),
    h("p", {}, "Copy it now: it is shown this once and cannot be shown again."),
    h("div", { class: "row secret-row" }, secret, copy), copied));
  reveal(out);
}

function confirmDialog() {
  const text = h("p");
  const cancel = h("button", { type: "button", class: "secondary", value: "cancel" }, "Cancel");
  const ok = h("button", { type: "button", class: "danger", value: "revoke" }, "Revoke");
  const el = h("dialog", { class: "confirm", "aria-labelledby": "revoke-title" },
    h("h2", { id: "revoke-title" }, "Revoke this key?"), text, h("div", { class: "row end" }, cancel, ok));
  let settle = () => {};
  cancel.addEventListener("click", () => el.close("cancel"));
  ok.addEventListener("click", () => el.close("revoke"));
  el.addEventListener("close", () => settle(el.returnValue === "revoke"));
  return {
    el,
    ask(k) {
      text.textContent = `“${k.name}” (${k.prefix}, scopes ${k.scopes.join(", ")}) will be refused from now on, everywhere it is used. This cannot be undone: a new key would have to be created and installed.`;
      el.returnValue = "";
      return new Promise((resolve) => {
        settle = resolve;
        el.showModal();
        cancel.focus();
      });
    },
  };
}
