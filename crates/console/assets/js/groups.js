// The security groups of the project and region: one page of the server's list at a time
// (limit/offset), filtered by exact name and by tags, and the "Create security group" form.

import * as api from "./api.js";
import { h, add, table, tagList, time, fmtNumber, errorPanel, field, formDialog, showErrors, clearErrors } from "./dom.js";

const PAGE_SIZES = [25, 50, 100];

/// `env, team=web` → tag_key=env and tag_key_value={"team":"web"}.
export function parseTagFilter(text) {
  const keys = [];
  const pairs = {};
  for (const part of text.split(",").map((p) => p.trim()).filter(Boolean)) {
    const eq = part.indexOf("=");
    if (eq < 0) keys.push(part);
    else pairs[part.slice(0, eq).trim()] = part.slice(eq + 1).trim();
  }
  return { keys, pairs };
}

/// Tags typed as `key=value`, one per line or separated by commas → an object; throws on `=value`.
export function parseTags(text) {
  const tags = {};
  for (const part of text.split(/[\n,]/).map((p) => p.trim()).filter(Boolean)) {
    const eq = part.indexOf("=");
    const key = (eq < 0 ? part : part.slice(0, eq)).trim();
    if (!key) throw new Error(`"${part}" has no key: write key=value`);
    tags[key] = eq < 0 ? "" : part.slice(eq + 1).trim();
  }
  return tags;
}

export async function groupsPage(ctx) {
  const { main, query, session } = ctx;
  ctx.setTitle("Security groups");
  const limit = PAGE_SIZES.includes(Number(query.get("limit"))) ? Number(query.get("limit")) : PAGE_SIZES[0];
  const offset = Math.max(0, Number.parseInt(query.get("offset") || "0", 10) || 0);
  const name = query.get("name") || "";
  const tag = query.get("tag") || "";
  const base = `/cloud/v1/securitygroups/${session.project}/${session.region}`;

  const createButton = h("button.primary", { type: "button", onClick: () => createGroupDialog(ctx) }, "Create security group");
  add(main, 
    h("div.page-head", null, h("h1", null, "Security groups"), h("div.page-actions", null, createButton)),
    h("p.muted.scope-line", null, `Project ${session.project}, region ${session.region}.`),
  );

  // Filters: they live in the URL hash, so a filtered page can be reloaded or shared (no key in it).
  const nameField = field({ label: "Name", name: "name", type: "search", value: name, hint: "Exact name" });
  const tagField = field({ label: "Tag", name: "tag", type: "search", value: tag, hint: "key or key=value, comma-separated" });
  const filterForm = h(
    "form.filters",
    { role: "search", "aria-label": "Filter security groups", novalidate: true },
    nameField.wrap,
    tagField.wrap,
    h("div.filter-actions", null, h("button", { type: "submit" }, "Filter"), name || tag ? h("button", { type: "button", onClick: () => ctx.navigate("/groups", { limit: limit === 25 ? null : limit }) }, "Clear") : null),
  );
  filterForm.addEventListener("submit", (event) => {
    event.preventDefault();
    ctx.navigate("/groups", { name: nameField.control.value.trim(), tag: tagField.control.value.trim(), limit: limit === 25 ? null : limit });
  });
  add(main, filterForm);

  const { keys, pairs } = parseTagFilter(tag);
  const params = { limit, offset, name, tag_key: keys, tag_key_value: Object.keys(pairs).length ? JSON.stringify(pairs) : null };
  const results = h("div.results", { "aria-busy": "true" });
  add(main, results);
  let page;
  try {
    page = await api.get(`${base}${api.query(params)}`);
  } catch (error) {
    if (!ctx.alive()) return;
    results.removeAttribute("aria-busy");
    add(results, errorPanel(error, "Listing security groups"));
    return;
  }
  if (!ctx.alive()) return;
  results.removeAttribute("aria-busy");

  const count = page.count;
  const first = count === 0 ? 0 : offset + 1;
  const last = offset + page.results.length;
  const filtered = name || tag;
  const rows = page.results.map((g) => [
    h("a", { href: `#/groups/${g.id}` }, g.name),
    g.description ? h("span.clip", { title: g.description }, g.description) : h("span.muted", null, "—"),
    h("span.num", null, String(g.security_group_rules.length)),
    tagList(g.tags_v2),
    time(g.created_at),
  ]);
  add(results, 
    h("p.summary", { id: "groups-summary" }, count === 0 ? (filtered ? "No security group matches these filters." : "No security groups in this project and region yet.") : `Showing ${fmtNumber(first)}–${fmtNumber(last)} of ${fmtNumber(count)} security groups`),
    table({
      label: "Security groups",
      columns: [{ label: "Name" }, { label: "Description", className: "col-wide" }, { label: "Rules", className: "num" }, { label: "Tags" }, { label: "Created", className: "col-time" }],
      rows,
      empty: filtered ? "No matches." : "No security groups yet. Create one to get started.",
    }),
    pager(ctx, { count, offset, limit, name, tag }),
  );
}
groupsPage.pageName = "groups";

function pager(ctx, { count, offset, limit, name, tag }) {
  const pages = Math.max(1, Math.ceil(count / limit));
  const pageNo = Math.floor(offset / limit) + 1;
  const go = (newOffset, newLimit = limit) => ctx.navigate("/groups", { name, tag, offset: newOffset || null, limit: newLimit === 25 ? null : newLimit });
  const size = h(
    "select",
    { id: "page-size", name: "limit" },
    PAGE_SIZES.map((n) => h("option", { value: n, selected: n === limit }, String(n))),
  );
  size.addEventListener("change", () => go(0, Number(size.value)));
  return h(
    "nav.pager",
    { "aria-label": "Pages of security groups" },
    h("button", { type: "button", disabled: offset === 0, onClick: () => go(Math.max(0, offset - limit)) }, "Previous"),
    h("span.page-no", null, `Page ${fmtNumber(pageNo)} of ${fmtNumber(pages)}`),
    h("button", { type: "button", disabled: offset + limit >= count, onClick: () => go(offset + limit) }, "Next"),
    h("span.page-size", null, h("label", { for: "page-size" }, "Rows per page"), size),
  );
}

/// The "Create security group" form: a v2 create (a task), polled until the group exists.
function createGroupDialog(ctx) {
  const { session } = ctx;
  const name = field({ label: "Name", name: "name", hint: "3 to 63 letters, digits, spaces, '.', '_' or '-'", attrs: { required: true } });
  const description = field({ label: "Description", name: "description" });
  const tags = field({ label: "Tags", name: "tags", kind: "textarea", hint: "key=value, one per line (optional)" });
  const startId = "start-rules";
  const start = h(
    "fieldset.choice",
    { "data-field": "rules" },
    h("legend", null, "Start with"),
    h("div.radio", null, h("input", { type: "radio", id: `${startId}-default`, name: "start", value: "default", checked: true }), h("label", { for: `${startId}-default` }, "The default rules (allow all outgoing traffic, IPv4 and IPv6)")),
    h("div.radio", null, h("input", { type: "radio", id: `${startId}-empty`, name: "start", value: "empty" }), h("label", { for: `${startId}-empty` }, "No rules (nothing allowed)")),
    h("p.field-error", { hidden: true }),
  );
  const progress = h("p.muted", { role: "status" });
  const { dialog, form, submit } = formDialog({
    title: "Create security group",
    formClass: ".stack",
    submitLabel: "Create",
    content: [name.wrap, description.wrap, tags.wrap, start, progress],
  });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors(form);
    const body = { name: name.control.value.trim(), description: description.control.value };
    try {
      const parsed = parseTags(tags.control.value);
      if (Object.keys(parsed).length) body.tags = parsed;
    } catch (error) {
      showErrors(form, new api.ApiError(400, { message: "Check the tags.", invalid_fields: { tags: [error.message] } }));
      return;
    }
    if (form.querySelector("input[name=start]:checked").value === "empty") body.rules = [];
    submit.disabled = true;
    progress.textContent = "Creating…";
    try {
      const answer = await api.post(`/cloud/v2/security_groups/${session.project}/${session.region}`, body);
      const task = await api.waitForTask(answer.tasks[0]);
      if (task.state === "ERROR") throw new api.ApiError(409, { message: task.error || "The task failed." });
      if (task.state !== "FINISHED") {
        dialog.close();
        ctx.flash(`The group is still being created (task ${answer.tasks[0]}); see Tasks.`);
        ctx.navigate("/tasks");
        return;
      }
      const id = task.created_resources.security_groups[0];
      dialog.close();
      ctx.flash(`Created security group ${body.name}.`);
      ctx.navigate(`/groups/${id}`);
    } catch (error) {
      progress.textContent = "";
      showErrors(form, error);
    } finally {
      submit.disabled = false;
    }
  });
}

/// The names of groups by id (for remote groups and ports): one request per unknown id.
const names = new Map();
export async function groupNames(session, ids) {
  const missing = [...new Set(ids)].filter((id) => id && !names.has(id));
  await Promise.all(
    missing.slice(0, 50).map(async (id) => {
      try {
        const g = await api.get(`/cloud/v1/securitygroups/${session.project}/${session.region}/${id}`);
        names.set(id, g.name);
      } catch {
        names.set(id, null);
      }
    }),
  );
  return (id) => names.get(id) || null;
}

export function rememberName(id, name) {
  names.set(id, name);
}
