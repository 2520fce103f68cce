// FaceGate console: sign-in, the views allowed by the key's scopes, hash routing.
import { getJSON, onAuthFailure, session } from "./js/api.js";
import { h } from "./js/dom.js";
import { auditView } from "./js/views/audit.js";
import { compareView } from "./js/views/compare.js";
import { enrolView } from "./js/views/enrol.js";
import { identifyView } from "./js/views/identify.js";
import { keysView } from "./js/views/keys.js";
import { livenessView } from "./js/views/liveness.js";
import { modelView } from "./js/views/model.js";
import { peopleView } from "./js/views/people.js";
import { verifyView } from "./js/views/verify.js";

// route -> [nav label, scope needed, view factory]
const ROUTES = {
  enrol: ["Enrol", "enroll", enrolView],
  verify: ["Verify", "verify", verifyView],
  identify: ["Identify", "verify", identifyView],
  compare: ["Compare", "compare", compareView],
  liveness: ["Liveness", "verify", livenessView],
  people: ["People", "admin", peopleView],
  model: ["Model", "admin", modelView],
  audit: ["Audit", "admin", auditView],
  keys: ["Keys", "admin", keysView],
};

const $ = (id) => document.getElementById(id);
let views = {};
let current = null;

function toast(message) {
  const t = h("div", { class: "toast", role: "status" }, message);
  $("toasts").append(t);
  setTimeout(() => t.remove(), 5000);
}

function showSignIn(message = "", tone = "warn") {
  for (const v of Object.values(views)) v.hide?.();
  views = {};
  current = null;
  $("app").hidden = true;
  $("who").hidden = true;
  $("signin").hidden = false;
  const msg = $("signin-message");
  msg.textContent = message;
  msg.className = `alert ${tone}`;
  msg.hidden = !message;
  $("signin-key").value = "";
  $("signin-key").focus();
}

function authMessage(err) {
  if (err.status === 403) {
    return `This key is not allowed to do that (${err.detail}). Sign in with a key that has the needed scope.`;
  }
  return `The API key was not accepted (${err.detail}). Sign in again.`;
}

onAuthFailure((err) => {
  session.key = null;
  showSignIn(authMessage(err), "error");
});

function start(me) {
  const can = (scope) => me.scopes.includes("admin") || me.scopes.includes(scope);
  const ctx = { can, toast, me };
  const nav = $("nav");
  nav.replaceChildren();
  for (const [route, [label, scope, make]] of Object.entries(ROUTES)) {
    if (!can(scope)) continue;
    views[route] = make(ctx);
    nav.append(h("a", { href: `#${route}`, dataset: { route } }, label));
  }
  $("who-name").textContent = me.name;
  $("who-scopes").textContent = me.scopes.join(", ");
  $("who").hidden = false;
  $("signin").hidden = true;
  $("app").hidden = false;
  route();
}

function route() {
  if (!Object.keys(views).length) return;
  const wanted = location.hash.replace(/^#\/?/, "");
  const name = views[wanted] ? wanted : Object.keys(views)[0];
  if (current === name) return;
  if (current) views[current].hide?.();
  current = name;
  const view = views[name];
  for (const a of $("nav").querySelectorAll("a")) {
    if (a.dataset.route === name) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  $("view-title").textContent = view.title;
  $("view").replaceChildren(view.el);
  document.title = `${view.title} · FaceGate`;
  view.show?.();
}

async function signIn(key) {
  const button = $("signin-button");
  button.disabled = true;
  try {
    const me = await getJSON("/me", { key });
    session.key = key;
    start(me);
  } catch (err) {
    session.key = null;
    const msg = err.status === 401 ? `That key was not accepted: ${err.detail}.` : `${err.title}: ${err.detail}.`;
    showSignIn(msg, "error");
  } finally {
    button.disabled = false;
  }
}

$("signin-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const key = $("signin-key").value.trim();
  if (!key) showSignIn("Enter an API key.", "error");
  else signIn(key);
});

$("signout").addEventListener("click", () => {
  session.key = null;
  showSignIn("You are signed out. The key was forgotten by this tab.", "ok");
});

window.addEventListener("hashchange", route);

if (session.key) signIn(session.key);
else showSignIn();
