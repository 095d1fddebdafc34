// Small DOM helpers. Everything the console shows is built with createElement and textContent:
// no HTML is ever parsed from strings, so nothing the API returns can become markup.

import { ApiError, NetworkError } from "./api.js";

/// `h("button.primary", {type: "submit", onClick}, "Save")`: an element with classes, attributes,
/// event listeners (`on…` functions) and children (strings, numbers, nodes, arrays; null skipped).
export function h(spec, attrs, ...children) {
  const [tag, ...classes] = spec.split(".");
  const el = document.createElement(tag || "div");
  if (classes.length) el.className = classes.join(" ");
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      el.addEventListener(name.slice(2).toLowerCase(), value);
    } else if (name === "class") {
      el.className = [el.className, value].filter(Boolean).join(" ");
    } else if (name === "value" || name === "checked" || name === "selected") {
      el[name] = value;
    } else {
      el.setAttribute(name, value === true ? "" : String(value));
    }
  }
  append(el, children);
  return el;
}

/// Appends children as `h` does (null, undefined and false are skipped; arrays are flattened).
export function add(el, ...children) {
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : String(child));
  }
}

export function clear(el) {
  while (el.firstChild) el.firstChild.remove();
  return el;
}

let ids = 0;
export const uid = (prefix) => `${prefix}-${++ids}`;

// ---- formatting -------------------------------------------------------------------------------

const number = new Intl.NumberFormat("en-US");
export const fmtNumber = (n) => number.format(n);

/// An API time (`2019-07-26T13:25:03+0000` or naive UTC `2019-07-26T13:25:03`) as a <time>.
export function time(value) {
  if (!value) return h("span.muted", null, "—");
  const text = String(value).replace("T", " ").replace(/\+0000$/, "");
  return h("time", { datetime: String(value).replace(/\+0000$/, "Z"), title: `${text} UTC` }, text);
}

export const shortId = (id) => (id ? String(id).slice(0, 8) : "");

const PORTED = new Set(["tcp", "udp", "sctp", "dccp", "udplite"]);
const ICMP = new Set(["icmp", "ipv6-icmp"]);

export function protocolText(protocol) {
  return protocol === null || protocol === undefined ? "Any" : String(protocol).toUpperCase();
}

export function portsText(rule) {
  const { protocol, port_range_min: min, port_range_max: max } = rule;
  if (ICMP.has(protocol)) {
    if (min === null || min === undefined) return "All types";
    return max === null || max === undefined ? `type ${min}` : `type ${min} code ${max}`;
  }
  if (protocol === null || protocol === undefined) return "All";
  if (!PORTED.has(protocol)) return "—";
  if (min === null || min === undefined) return "All";
  return max === null || max === undefined || max === min ? String(min) : `${min}–${max}`;
}

export function remoteText(rule) {
  if (rule.remote_ip_prefix) return rule.remote_ip_prefix;
  if (rule.remote_group_id) return `group ${shortId(rule.remote_group_id)}`;
  return "Anywhere";
}

export function ruleSummary(rule) {
  const ports = portsText(rule);
  return [rule.direction, rule.ethertype, protocolText(rule.protocol), ports === "—" ? "" : ports, remoteText(rule)].filter(Boolean).join(" ");
}

/// Says `text` to screen readers through the shell's live region.
export function announce(text) {
  const live = document.getElementById("announcer");
  if (!live) return;
  live.textContent = "";
  setTimeout(() => {
    live.textContent = text;
  }, 30);
}

// ---- small components -------------------------------------------------------------------------

export function badge(text, kind = "neutral") {
  return h(`span.badge.badge-${kind}`, null, text);
}

export function tagList(tags) {
  if (!tags || tags.length === 0) return h("span.muted", null, "—");
  return h(
    "ul.tags",
    null,
    tags.map((t) => h("li.tag", { title: t.read_only ? "Read-only tag" : null }, t.value === "" ? t.key : `${t.key}=${t.value}`)),
  );
}

/// A table in a horizontally scrollable, keyboard-focusable region. `columns`: [{label, className}];
/// `rows`: [{cells: [...], className, attrs}] or plain arrays of cells.
export function table({ label, caption, columns, rows, empty = "Nothing here yet.", className = "" }) {
  const head = h("thead", null, h("tr", null, columns.map((c) => h("th", { scope: "col", class: c.className || null }, c.label))));
  const body = h("tbody");
  if (rows.length === 0) {
    body.append(h("tr.empty", null, h("td", { colspan: columns.length }, empty)));
  }
  for (const row of rows) {
    const { cells, className: rowClass, attrs } = Array.isArray(row) ? { cells: row } : row;
    body.append(h("tr", { ...(attrs || {}), class: rowClass || null }, cells.map((cell, i) => h("td", { class: columns[i].className || null }, cell))));
  }
  const t = h(`table.data${className ? "." + className : ""}`, null, caption ? h("caption", null, caption) : null, head, body);
  return h("div.table-wrap", { role: "region", "aria-label": label, tabindex: "0" }, t);
}

/// A message block for a failed load: 403 (not for this key), 404, network, other.
export function errorPanel(error, what) {
  if (error instanceof ApiError && error.status === 403) {
    return h(
      "div.notice.notice-warn",
      { role: "alert" },
      h("p", null, h("strong", null, "Not available for this key. "), `${what} needs a different kind of API key: the server answered 403.`),
      h("p.muted", null, error.message),
    );
  }
  if (error instanceof ApiError && error.status === 404) {
    return h("div.notice.notice-warn", { role: "alert" }, h("p", null, h("strong", null, "Not found. "), error.message));
  }
  if (error instanceof NetworkError) {
    return h("div.notice.notice-error", { role: "alert" }, h("p", null, h("strong", null, "No answer. "), error.message));
  }
  const id = error instanceof ApiError && error.requestId ? ` (request ${error.requestId})` : "";
  return h("div.notice.notice-error", { role: "alert" }, h("p", null, h("strong", null, `${what} failed. `), `${error.message}${id}`));
}

// ---- forms ------------------------------------------------------------------------------------

/// A labelled control with a hint and a slot for the API's error about it.
/// kind: "input" (default), "select" (with options [{value, label}]), "textarea".
export function field({ label, name, kind = "input", type = "text", value = "", hint, options, attrs = {}, className = "" }) {
  const id = uid(`f-${name}`);
  const hintId = hint ? `${id}-hint` : null;
  const errorId = `${id}-error`;
  const describedBy = [hintId, errorId].filter(Boolean).join(" ");
  let control;
  if (kind === "select") {
    control = h(
      "select",
      { id, name, "aria-describedby": describedBy, ...attrs },
      options.map((o) => h("option", { value: o.value, selected: String(o.value) === String(value) }, o.label)),
    );
  } else if (kind === "textarea") {
    control = h("textarea", { id, name, "aria-describedby": describedBy, rows: 3, ...attrs });
    control.value = value ?? "";
  } else {
    control = h("input", { id, name, type, "aria-describedby": describedBy, autocomplete: "off", spellcheck: "false", ...attrs });
    control.value = value ?? "";
  }
  const wrap = h(
    `div.field${className ? "." + className : ""}`,
    { "data-field": name },
    h("label", { for: id }, label),
    control,
    hint ? h("p.hint", { id: hintId }, hint) : null,
    h("p.field-error", { id: errorId, hidden: true }),
  );
  return { wrap, control };
}

/// Clears the errors a form shows.
export function clearErrors(form) {
  for (const el of form.querySelectorAll(".field-error")) {
    el.textContent = "";
    el.hidden = true;
  }
  for (const el of form.querySelectorAll("[aria-invalid]")) el.removeAttribute("aria-invalid");
  for (const el of form.querySelectorAll(".form-error")) {
    clear(el);
    el.hidden = true;
  }
}

/// Shows an API error on a form: each `invalid_fields` entry next to the field it names (a dotted
/// path such as `tags.env` goes to the field named by its first part, or by `aliases`), anything
/// else at the top of the form. Focuses the first field in error.
export function showErrors(form, error, aliases = {}, prefix = "Not saved.") {
  clearErrors(form);
  const general = [];
  let first = null;
  const fields = error instanceof ApiError ? error.invalidFields : {};
  for (const [path, reasons] of Object.entries(fields)) {
    const text = (Array.isArray(reasons) ? reasons : [reasons]).join(" ");
    const name = aliases[path] ?? aliases[path.split(".")[0]] ?? path.split(".")[0];
    const wrap = form.querySelector(`[data-field="${CSS.escape(name)}"]`);
    if (!wrap || wrap.hidden) {
      general.push(`${path}: ${text}`);
      continue;
    }
    const slot = wrap.querySelector(".field-error");
    const detail = path.includes(".") && name !== path ? `${path.slice(name.length + 1)}: ${text}` : text;
    slot.textContent = slot.textContent ? `${slot.textContent} ${detail}` : detail;
    slot.hidden = false;
    const control = wrap.querySelector("input, select, textarea");
    control.setAttribute("aria-invalid", "true");
    first = first || control;
  }
  const box = form.querySelector(".form-error");
  if (general.length || !first) {
    add(
      box,
      h("p", null, h("strong", null, `${prefix} `), error instanceof ApiError || error instanceof NetworkError ? error.message : String(error)),
      general.length ? h("ul", null, general.map((g) => h("li", null, g))) : null,
    );
    box.hidden = false;
  }
  (first || box).focus();
}

/// The top-of-form slot for errors that name no field.
export const formError = () => h("div.form-error", { role: "alert", tabindex: "-1", hidden: true });

// ---- dialogs ----------------------------------------------------------------------------------

/// A modal <dialog> (focus is trapped by the browser, Escape closes it); focus returns to the
/// control that opened it. Returns {dialog, close}.
export function openDialog({ title, content, className = "" }) {
  const opener = document.activeElement;
  const titleId = uid("dialog-title");
  const closeButton = h("button.icon-button", { type: "button", "aria-label": "Close" }, "×");
  const dialog = h(
    `dialog${className ? "." + className : ""}`,
    { "aria-labelledby": titleId },
    h("div.dialog-head", null, h("h2", { id: titleId }, title), closeButton),
    h("div.dialog-body", null, content),
  );
  const close = () => dialog.close();
  closeButton.addEventListener("click", close);
  dialog.addEventListener("close", () => {
    dialog.remove();
    if (opener && opener.isConnected) opener.focus();
  });
  document.body.append(dialog);
  dialog.showModal();
  const first = dialog.querySelector(".dialog-body input, .dialog-body select, .dialog-body textarea, .dialog-body button");
  (first || closeButton).focus();
  return { dialog, close };
}

/// A dialog holding a form: an error box first (for `showErrors`), then `content`, then the submit
/// button (`submitLabel`, styled `submitClass`) and Cancel. Returns the dialog's handle (`close`),
/// the form and its submit button.
export function formDialog({ title, className = "", formClass = "", submitLabel, submitClass = "primary", content }) {
  const submit = h(`button.${submitClass}`, { type: "submit" }, submitLabel);
  const cancel = h("button", { type: "button", onClick: () => dialog.close() }, "Cancel");
  const form = h(`form${formClass}`, { novalidate: true }, formError(), ...content, h("div.actions", null, submit, cancel));
  const dialog = openDialog({ title, content: form, className });
  return { dialog, form, submit };
}

/// Polls while the page is shown: `fetch()`, then (unless the page was left meanwhile) `tick(data)`,
/// which returns the milliseconds until the next poll, and `draw(data)` only when `key(data)`
/// changed, so that focus and selection survive the polling. A failure goes to `onError` and
/// ends the polling.
export async function poll(ctx, { fetch, tick, key, draw, onError }) {
  let timer = null;
  let last = "";
  let stopped = false;
  ctx.onCleanup(() => {
    stopped = true;
    clearTimeout(timer);
  });
  async function load() {
    let data;
    try {
      data = await fetch();
    } catch (error) {
      if (!stopped) onError(error);
      return;
    }
    if (stopped) return;
    const delay = tick(data);
    const snapshot = key(data);
    if (snapshot !== last) {
      last = snapshot;
      draw(data);
    }
    timer = setTimeout(load, delay);
  }
  await load();
}

/// A dialog asking to confirm `action` (an async function). The dialog stays open with the error
/// when the action fails; `onError` may render more (e.g. the ports using a group).
export function confirmDialog({ title, message, confirmLabel, danger = false, action, onError }) {
  const details = h("div.dialog-details");
  const { dialog: dialogRef, form, submit: confirm } = formDialog({
    title,
    submitLabel: confirmLabel,
    submitClass: danger ? "danger" : "primary",
    content: [h("p", null, message), details],
  });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors(form);
    clear(details);
    confirm.disabled = true;
    try {
      await action();
      dialogRef.close();
    } catch (error) {
      // `onError` may explain the refusal better than the message (the ports using a group).
      const explained = onError ? onError(error) : null;
      if (explained) {
        add(details, explained);
        confirm.focus();
      } else {
        showErrors(form, error, {}, "Not done.");
      }
    } finally {
      confirm.disabled = false;
    }
  });
  confirm.focus();
  return dialogRef;
}
