// People: a paginated, searchable list with the reference crop; suspend or reactivate (PATCH
// /people/{id}: a suspended person is kept but never matched), export and delete.
import { blobURL, getJSON, request } from "../api.js";
import { busy, clear, date, debounce, h } from "../dom.js";
import { problemView } from "../problem.js";
import { badge } from "./common.js";

const PAGE = 20;

export function peopleView(ctx) {
  let offset = 0;
  let urls = [];
  const search = h("input", { type: "search", placeholder: "name or person id", "aria-label": "Search people", autocomplete: "off" });
  const status = h("p", { class: "note", "aria-live": "polite" });
  const list = h("ul", { class: "people" });
  const prev = h("button", { type: "button", class: "secondary", onclick: () => load(offset - PAGE) }, "← Previous");
  const next = h("button", { type: "button", class: "secondary", onclick: () => load(offset + PAGE) }, "Next →");
  const pager = h("div", { class: "row pager" }, prev, status, next);
  const out = h("div", { "aria-live": "polite" });
  const dialog = confirmDialog();

  search.addEventListener("input", debounce(() => load(0), 300));

  async function load(at) {
    offset = Math.max(0, at);
    const q = search.value.trim();
    let page;
    try {
      page = await getJSON(`/people?offset=${offset}&limit=${PAGE}${q ? `&q=${encodeURIComponent(q)}` : ""}`);
    } catch (err) {
      clear(out, problemView(err));
      return;
    }
    if (!page.items.length && offset > 0 && page.total > 0) return load(Math.max(0, page.total - PAGE));
    for (const u of urls) URL.revokeObjectURL(u);
    urls = [];
    out.replaceChildren();
    list.replaceChildren(...page.items.map(row));
    if (!page.total) list.append(h("li", { class: "empty" }, q ? `Nobody matches “${q}”.` : "Nobody is enrolled yet."));
    const last = Math.min(offset + page.items.length, page.total);
    status.textContent = page.total ? `${offset + 1}–${last} of ${page.total}` : "";
    prev.disabled = offset === 0;
    next.disabled = last >= page.total;
  }

  function row(p) {
    const thumb = h("img", { class: "thumb", alt: `reference crop of ${p.name}`, width: 72, height: 72 });
    blobURL(`/people/${encodeURIComponent(p.person_id)}/crop`)
      .then((u) => {
        urls.push(u);
        thumb.src = u;
      })
      .catch(() => thumb.classList.add("missing"));
    const exportBtn = h("button", { type: "button", class: "secondary" }, "Export");
    exportBtn.addEventListener("click", () => busy(exportBtn, "Exporting…", () => exportPerson(p, out, ctx)));
    const deleteBtn = h("button", { type: "button", class: "danger", onclick: () => remove(p) }, "Delete");
    const suspended = p.status === "suspended";
    const standingBtn = h("button", { type: "button", class: "secondary" }, suspended ? "Reactivate" : "Suspend");
    standingBtn.addEventListener("click", () =>
      busy(standingBtn, suspended ? "Reactivating…" : "Suspending…", () => setStatus(p, suspended ? "active" : "suspended")));
    // updated_at moves when the photo is replaced and when the person is suspended or reactivated
    const changed = new Date(p.updated_at) - new Date(p.created_at) > 1000;
    const updated = changed ? ` · changed ${date(p.updated_at)}` : "";
    return h(
      "li",
      { class: "person", dataset: { personId: p.person_id } },
      thumb,
      h(
        "div",
        { class: "who" },
        h("strong", {}, p.name, " ", standing(p)),
        h("small", {}, h("code", {}, p.person_id)),
        h("small", {}, `enrolled ${date(p.created_at)}${updated}`),
        suspended && p.suspended_at ? h("small", { class: "standing-note" }, `suspended ${date(p.suspended_at)}: kept, but never matched`) : null,
        p.expires_at ? h("small", { class: "standing-note" }, `${new Date(p.expires_at) <= new Date() ? "expired" : "expires"} ${date(p.expires_at)}`) : null,
        h("small", {}, "model ", p.model_versions.length ? p.model_versions.map((v) => h("span", { class: "chip" }, v)) : "–"),
      ),
      h("div", { class: "actions" }, standingBtn, exportBtn, deleteBtn),
    );
  }

  async function setStatus(p, status) {
    try {
      await request(`/people/${encodeURIComponent(p.person_id)}`, { method: "PATCH", body: { status } });
      ctx.toast(status === "suspended"
        ? `${p.name} (${p.person_id}) is suspended: kept, but not matched by verify or identify until reactivated.`
        : `${p.name} (${p.person_id}) is active again and can be matched.`);
      await load(offset);
    } catch (err) {
      clear(out, problemView(err));
    }
  }

  async function remove(p) {
    if (!(await dialog.ask(p))) return;
    try {
      await request(`/people/${encodeURIComponent(p.person_id)}`, { method: "DELETE" });
      ctx.toast(`${p.name} (${p.person_id}) was deleted.`);
      await load(offset);
    } catch (err) {
      clear(out, problemView(err));
    }
  }

  const el = h(
    "div",
    { class: "view-body" },
    h("div", { class: "card" }, h("div", { class: "row" }, search), out, list, pager),
    dialog.el,
  );
  return { title: "People", el, show: () => load(offset), hide: () => {} };
}

/** A badge for a person who cannot be matched now (suspended or expired); none for an active one. */
function standing(p) {
  if (p.status === "suspended") return badge("suspended", "warn");
  if (p.matchable === false) return badge("expired", "warn");
  return null;
}

async function exportPerson(p, out, ctx) {
  try {
    const resp = await request(`/people/${encodeURIComponent(p.person_id)}/export`);
    const blob = new Blob([await resp.text()], { type: "application/json" });
    const url = URL.createObjectURL(blob);
    const a = h("a", { href: url, download: `facegate-${p.person_id}.json`, hidden: true });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10_000);
    ctx.toast(`Exported everything stored about ${p.name} (${p.person_id}) to facegate-${p.person_id}.json in your downloads.`);
  } catch (err) {
    clear(out, problemView(err));
  }
}

function confirmDialog() {
  const text = h("p");
  const cancel = h("button", { type: "button", class: "secondary", value: "cancel" }, "Cancel");
  const ok = h("button", { type: "button", class: "danger", value: "delete" }, "Delete");
  const el = h("dialog", { class: "confirm", "aria-labelledby": "confirm-title" },
    h("h2", { id: "confirm-title" }, "Delete this person?"), text, h("div", { class: "row end" }, cancel, ok));
  let settle = () => {};
  cancel.addEventListener("click", () => el.close("cancel"));
  ok.addEventListener("click", () => el.close("delete"));
  el.addEventListener("close", () => settle(el.returnValue === "delete"));
  return {
    el,
    ask(p) {
      text.textContent =
        `${p.name} (${p.person_id}) will be removed with the reference photo crop and every embedding. ` +
        "This cannot be undone; export the person's data first if you need a copy.";
      el.returnValue = "";
      return new Promise((resolve) => {
        settle = resolve;
        el.showModal();
        cancel.focus();
      });
    },
  };
}
