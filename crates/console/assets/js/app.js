// The console's shell: sign in and out, the role of the key, the project and region, the
// navigation and the hash router (`#/groups`, `#/groups/<id>`, …). Pages live in their modules.

import * as api from "./api.js";
import { ApiError } from "./api.js";
import { h, add, clear, field, formError, showErrors, clearErrors, announce } from "./dom.js";
import { groupsPage } from "./groups.js";
import { groupPage } from "./group.js";
import { tasksPage, portsPage, portPage, checkPage, quotasPage } from "./pages.js";
import { agentsPage } from "./platform.js";

const SCOPE_KEY = "palisade.console.scope";

/// What the pages share: the key's role and the project and region the console works in.
export const session = { role: null, project: 1, region: 1 };

const TENANT_NAV = [
  ["/groups", "Security groups"],
  ["/tasks", "Tasks"],
  ["/ports", "Ports"],
  ["/check", "Check a flow"],
  ["/quotas", "Quotas"],
];
const PLATFORM_NAV = [
  ["/agents", "Agents"],
  ["/ports", "Ports"],
  ["/quotas", "Quotas"],
];

const ROUTES = [
  [/^\/groups$/, groupsPage],
  [/^\/groups\/([0-9a-fA-F-]{36})$/, groupPage],
  [/^\/tasks$/, tasksPage],
  [/^\/ports$/, portsPage],
  [/^\/ports\/([0-9a-fA-F-]{36})$/, portPage],
  [/^\/check$/, checkPage],
  [/^\/quotas$/, quotasPage],
  [/^\/agents$/, agentsPage],
];

const root = document.getElementById("app");
let cleanup = null;
let renderToken = 0;
let lastPath = null;
let pendingFlash = null;
let signInMessage = null;
// While a key is being tried, a 401 is the sign-in form's answer, not a reason to sign out.
let tryingKey = false;

// ---- routing ----------------------------------------------------------------------------------

function parseHash() {
  const raw = location.hash.replace(/^#/, "");
  const [path, search = ""] = raw.split("?");
  return { path: path || "/", query: new URLSearchParams(search) };
}

/// Goes to `path` (with an optional query object); same hash: renders again.
export function navigate(path, queryObject) {
  const search = queryObject ? api.query(queryObject) : "";
  const target = `#${path}${search}`;
  if (location.hash === target) render();
  else location.hash = target;
}

/// A message shown at the top of the next page rendered (and announced).
export function flash(text) {
  pendingFlash = text;
}

function defaultPath() {
  return session.role === "platform" ? "/agents" : "/groups";
}

async function render() {
  const token = ++renderToken;
  if (cleanup) {
    cleanup();
    cleanup = null;
  }
  if (!api.hasKey()) {
    lastPath = null;
    renderSignIn();
    return;
  }
  if (!session.role) {
    const ok = await establishRole();
    if (!ok || token !== renderToken) return;
  }
  let { path, query } = parseHash();
  if (path === "/" || path === "") {
    history.replaceState(null, "", `#${defaultPath()}`);
    path = defaultPath();
  }
  const main = renderShell(path);
  const route = ROUTES.find(([pattern]) => pattern.test(path));
  const samePage = lastPath === path;
  lastPath = path;
  main.dataset.state = "loading";
  if (pendingFlash) {
    add(main, h("div.flash", null, pendingFlash));
    announce(pendingFlash);
    pendingFlash = null;
  }
  const ctx = {
    main,
    query,
    session,
    navigate,
    flash,
    alive: () => token === renderToken,
    setTitle: (title) => {
      document.title = `${title} · Palisade console`;
    },
    onCleanup: (fn) => {
      cleanup = fn;
    },
  };
  if (!route) {
    ctx.setTitle("Not found");
    add(main, h("h1", { tabindex: "-1" }, "Not found"), h("p", null, "This page does not exist. ", h("a", { href: `#${defaultPath()}` }, "Go to the start page"), "."));
  } else {
    const args = path.match(route[0]).slice(1);
    main.dataset.page = route[1].pageName || "";
    try {
      await route[1](ctx, ...args);
    } catch (error) {
      if (token !== renderToken) return;
      add(main, h("p.notice.notice-error", { role: "alert" }, `Something went wrong: ${error.message}`));
    }
  }
  if (token !== renderToken) return;
  main.dataset.state = "ready";
  if (!samePage) {
    const heading = main.querySelector("h1");
    if (heading) {
      heading.tabIndex = -1;
      heading.focus({ preventScroll: true });
    }
  }
}

window.addEventListener("hashchange", render);

// ---- shell ------------------------------------------------------------------------------------

function scopeField(label, name, value, onChange) {
  const id = `scope-${name}`;
  const input = h("input", { id, name, type: "text", inputmode: "numeric", pattern: "[0-9]*", size: "4", value: String(value), autocomplete: "off" });
  input.addEventListener("change", () => onChange(input));
  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter") {
      event.preventDefault();
      onChange(input);
    }
  });
  return h("div.scope-field", null, h("label", { for: id }, label), input);
}

function changeScope(which, input) {
  const value = input.value.trim();
  if (!/^\d{1,9}$/.test(value)) {
    input.setAttribute("aria-invalid", "true");
    input.value = String(session[which]);
    announce(`${which === "project" ? "Project" : "Region"} must be a number; kept ${session[which]}.`);
    return;
  }
  input.removeAttribute("aria-invalid");
  if (Number(value) === session[which]) return;
  session[which] = Number(value);
  try {
    sessionStorage.setItem(SCOPE_KEY, JSON.stringify({ project: session.project, region: session.region }));
  } catch {
    // Not stored: the scope lasts for this page.
  }
  announce(`Now in project ${session.project}, region ${session.region}.`);
  // A group or port belongs to one project: go back to its list.
  const { path, query } = parseHash();
  if (path.startsWith("/groups/")) navigate("/groups");
  else if (path.startsWith("/ports/")) navigate("/ports");
  else if (path === "/groups") {
    query.delete("offset");
    navigate("/groups", Object.fromEntries(query));
  } else render();
}

function renderShell(path) {
  clear(root);
  const nav = session.role === "platform" ? PLATFORM_NAV : TENANT_NAV;
  const skip = h("a.skip-link", { href: "#main" }, "Skip to content");
  skip.addEventListener("click", (event) => {
    event.preventDefault();
    document.getElementById("main").focus();
  });
  const roleText = session.role === "platform" ? "Platform key" : "Tenant key";
  const header = h(
    "header.topbar",
    null,
    h("a.brand", { href: `#${defaultPath()}` }, h("span.brand-mark", { "aria-hidden": "true" }), "Palisade"),
    h(
      "div.scope",
      { role: "group", "aria-label": "Project and region" },
      scopeField("Project", "project", session.project, (input) => changeScope("project", input)),
      scopeField("Region", "region", session.region, (input) => changeScope("region", input)),
    ),
    h("span.role", { title: "The kind of API key you signed in with" }, roleText),
    h("button.signout", { type: "button", onClick: signOut }, "Sign out"),
  );
  const navEl = h(
    "nav.sidenav",
    { "aria-label": "Console" },
    h(
      "ul",
      null,
      nav.map(([href, label]) => {
        const current = path === href || path.startsWith(`${href}/`);
        return h("li", null, h("a", { href: `#${href}`, "aria-current": current ? "page" : null }, label));
      }),
    ),
  );
  const main = h("main", { id: "main", tabindex: "-1" });
  add(root, skip, header, h("div.layout", null, navEl, main));
  return main;
}

// ---- signing in and out -----------------------------------------------------------------------

/// Which views this key may use, found by asking: a tenant-only list, then the platform's agents.
async function detectRole() {
  try {
    await api.get("/cloud/v1/tasks?limit=1");
    return "tenant";
  } catch (error) {
    if (!(error instanceof ApiError) || error.status !== 403) throw error;
  }
  try {
    await api.get("/palisade/v1/agents");
    return "platform";
  } catch (error) {
    if (!(error instanceof ApiError) || error.status !== 403) throw error;
  }
  return "other";
}

async function establishRole() {
  tryingKey = true;
  try {
    const role = await detectRole();
    if (role === "other") {
      api.forgetKey();
      signInMessage = { error: true, text: "This key is an agent key: it may only read its host's policy, and the console has no view for it." };
      renderSignIn();
      return false;
    }
    session.role = role;
    return true;
  } catch (error) {
    api.forgetKey();
    session.role = null;
    signInMessage = {
      error: true,
      text: error instanceof ApiError && error.status === 401 ? "The key was not accepted (401). Check it and try again." : error.message,
    };
    renderSignIn();
    return false;
  } finally {
    tryingKey = false;
  }
}

function renderSignIn() {
  clear(root);
  document.title = "Sign in · Palisade console";
  const keyField = field({
    label: "API key",
    name: "api_key",
    type: "password",
    hint: "The token printed by palisade keys create, such as 1$5f0c…. It is kept in this tab only (session storage) and sent only in the Authorization header.",
    attrs: { autocomplete: "off", required: true },
  });
  const errorBox = formError();
  const button = h("button.primary", { type: "submit" }, "Sign in");
  // method=post and the policy's form-action 'none': even without script the key never lands in a URL.
  const form = h("form.signin-form", { novalidate: true, method: "post" }, errorBox, keyField.wrap, h("div.actions", null, button));
  const main = h(
    "main.signin",
    { id: "main", tabindex: "-1", "data-page": "signin", "data-state": "ready" },
    h("div.signin-card", null, h("div.brand.brand-large", null, h("span.brand-mark", { "aria-hidden": "true" }), "Palisade"), h("h1", null, "Sign in"), signInMessage ? h(signInMessage.error ? "p.notice.notice-error" : "p.notice", { role: signInMessage.error ? "alert" : "status" }, signInMessage.text) : null, form),
  );
  signInMessage = null;
  add(root, main);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors(form);
    const key = keyField.control.value.trim();
    if (!key) {
      showErrors(form, new ApiError(400, { message: "Enter an API key.", invalid_fields: { api_key: ["Enter an API key."] } }));
      return;
    }
    button.disabled = true;
    tryingKey = true;
    api.setKey(key);
    keyField.control.value = "";
    try {
      const role = await detectRole();
      if (role === "other") {
        api.forgetKey();
        showErrors(form, new ApiError(403, { message: "This is an agent key: the console has no view for it.", invalid_fields: { api_key: ["An agent key may only read its host's policy."] } }));
        return;
      }
      session.role = role;
      lastPath = null;
      if (parseHash().path === "/") navigate(defaultPath());
      else render();
    } catch (error) {
      api.forgetKey();
      const text = error instanceof ApiError && error.status === 401 ? "This key was not accepted." : error.message;
      showErrors(form, new ApiError(error.status || 0, { message: text, invalid_fields: { api_key: [text] } }));
    } finally {
      tryingKey = false;
      button.disabled = false;
    }
  });
  keyField.control.focus();
}

function signOut() {
  api.forgetKey();
  session.role = null;
  signInMessage = { error: false, text: "Signed out. The key was forgotten." };
  lastPath = null;
  if (location.hash && location.hash !== "#/") history.replaceState(null, "", location.pathname);
  render();
}

api.whenUnauthenticated(() => {
  if (tryingKey) return;
  api.forgetKey();
  session.role = null;
  signInMessage = { error: true, text: "The server no longer accepts this key (401). Sign in again." };
  render();
});

// ---- start --------------------------------------------------------------------------------------

try {
  const stored = JSON.parse(sessionStorage.getItem(SCOPE_KEY) || "null");
  if (stored && Number.isInteger(stored.project) && Number.isInteger(stored.region)) {
    session.project = stored.project;
    session.region = stored.region;
  }
} catch {
  // Defaults: project 1, region 1.
}
// One live region for the whole session, outside the part of the page that is redrawn.
document.body.append(h("div.sr-only", { id: "announcer", role: "status", "aria-live": "polite" }));
api.restoreKey();
render();
