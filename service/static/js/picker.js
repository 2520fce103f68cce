// Picks an enrolled person: search by name or id (needs the admin scope to list people),
// or type the exact person id.
import { getJSON } from "./api.js";
import { debounce, h } from "./dom.js";

export class PersonPicker {
  constructor(canList) {
    this.canList = canList;
    this.selected = null; // {person_id, name}
    this.input = h("input", {
      type: "search",
      autocomplete: "off",
      placeholder: canList ? "name or person id" : "person id",
      "aria-autocomplete": canList ? "list" : null,
    });
    this.input.id = "verify-person";
    this.list = h("ul", { class: "suggestions", role: "listbox", hidden: true });
    this.chosen = h("p", { class: "chosen", hidden: true });
    const hint = canList
      ? "Type part of a name or id and pick the person from the list, or type the exact person id."
      : "Type the exact person id (this key cannot list people).";
    this.el = h(
      "div",
      { class: "field picker" },
      h("label", { for: this.input.id }, "Person"),
      this.input,
      h("small", { class: "hint" }, hint),
      this.list,
      this.chosen,
    );
    if (canList) this.input.addEventListener("input", debounce(() => this.#search(), 250));
    this.input.addEventListener("input", () => this.#choose(null));
  }

  async #search() {
    const q = this.input.value.trim();
    if (!q || (this.selected && q === this.selected.person_id)) {
      this.list.hidden = true;
      return;
    }
    let page;
    try {
      page = await getJSON(`/people?limit=8&q=${encodeURIComponent(q)}`);
    } catch {
      this.list.hidden = true;
      return;
    }
    if (this.input.value.trim() !== q) return; // a newer search is under way
    this.list.replaceChildren(
      ...page.items.map((p) =>
        h(
          "li",
          { role: "option" },
          h("button", { type: "button", onclick: () => this.#choose(p) }, h("strong", {}, p.name), ` · ${p.person_id}`),
        ),
      ),
    );
    if (!page.items.length) this.list.append(h("li", { class: "empty" }, "nobody matches"));
    this.list.hidden = false;
  }

  #choose(person) {
    this.selected = person;
    this.chosen.hidden = !person;
    if (person) {
      this.input.value = person.person_id;
      this.chosen.textContent = `Selected: ${person.name} (${person.person_id})`;
      this.list.hidden = true;
    }
  }

  /** The person id to verify against: the picked person, else the typed text. */
  get personId() {
    return this.selected ? this.selected.person_id : this.input.value.trim();
  }
}
