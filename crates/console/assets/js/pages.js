// Tasks (live while one runs), ports and a port's effective rules, "Check a flow" and quotas.

import * as api from "./api.js";
import { ApiError } from "./api.js";
import { h, add, clear, table, time, errorPanel, field, formError, showErrors, clearErrors, protocolText, portsText, shortId, badge, fmtNumber, poll } from "./dom.js";
import { groupNames } from "./groups.js";
import { PROTOCOLS } from "./group.js";

const STATE_KIND = { NEW: "neutral", RUNNING: "info", FINISHED: "ok", ERROR: "danger" };

// ---- tasks --------------------------------------------------------------------------------------

export async function tasksPage(ctx) {
  const { main, session } = ctx;
  ctx.setTitle("Tasks");
  const live = h("p.live-state", { role: "status" });
  const body = h("div");
  add(main, h("div.page-head", null, h("h1", null, "Tasks")), h("p.muted", null, `The latest tasks of project ${session.project}, region ${session.region}, newest first.`), live, body);
  await poll(ctx, {
    fetch: () => api.get(`/cloud/v1/tasks${api.query({ limit: 25, project_id: session.project, region_id: session.region })}`),
    onError: (error) => {
      add(clear(body), errorPanel(error, "Listing tasks"));
      live.textContent = "";
    },
    tick: (page) => {
      const running = page.results.some((t) => t.state === "NEW" || t.state === "RUNNING");
      const text = running ? "Updating live: a task is running." : "All tasks have ended.";
      if (live.textContent !== text) live.textContent = text;
      live.classList.toggle("is-live", running);
      return running ? 1000 : 5000;
    },
    key: (page) => JSON.stringify(page.results.map((t) => [t.id, t.state, t.finished_on])),
    draw: (page) =>
      add(clear(body), 
        table({
          label: "Tasks",
          columns: [{ label: "State" }, { label: "Type" }, { label: "Created", className: "col-time" }, { label: "Finished", className: "col-time" }, { label: "Result", className: "col-wide" }, { label: "Task" }],
          rows: page.results.map((t) => [badge(t.state, STATE_KIND[t.state] || "neutral"), t.task_type.replaceAll("_", " "), time(t.created_on), time(t.finished_on), taskResult(t), h("span.mono", { title: t.id }, shortId(t.id))]),
          empty: "No tasks yet. Creating a security group starts one.",
        }),
      ),
  });
}
tasksPage.pageName = "tasks";

function taskResult(task) {
  if (task.state === "ERROR") return h("span.error-text", null, task.error || "Failed");
  const groups = task.created_resources?.security_groups || [];
  const rules = task.created_resources?.security_group_rules || [];
  if (groups.length) return ["Created group ", h("a", { href: `#/groups/${groups[0]}` }, task.data?.name || shortId(groups[0]))];
  if (rules.length) return `Created ${rules.length} rule${rules.length === 1 ? "" : "s"}`;
  return task.state === "FINISHED" ? "Done" : h("span.muted", null, "—");
}

// ---- ports --------------------------------------------------------------------------------------

export async function portsPage(ctx) {
  const { main, session, query } = ctx;
  const platform = session.role === "platform";
  ctx.setTitle("Ports");
  add(main, 
    h("div.page-head", null, h("h1", null, "Ports")),
    h("p.muted", null, platform ? "The ports of every client, as the platform registered them." : `The ports of your instances in project ${session.project}, region ${session.region}, and the groups bound to them.`),
  );
  const params = platform ? { client_id: query.get("client") || null, host: query.get("host") || null } : { project_id: session.project, region_id: session.region };
  if (platform) {
    const client = field({ label: "Client", name: "client", value: query.get("client") || "", attrs: { inputmode: "numeric" } });
    const host = field({ label: "Host", name: "host", value: query.get("host") || "" });
    const form = h("form.filters", { role: "search", "aria-label": "Filter ports", novalidate: true }, client.wrap, host.wrap, h("div.filter-actions", null, h("button", { type: "submit" }, "Filter")));
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      ctx.navigate("/ports", { client: client.control.value.trim(), host: host.control.value.trim() });
    });
    add(main, form);
  }
  let page;
  try {
    page = await api.get(`/palisade/v1/ports${api.query(params)}`);
  } catch (error) {
    if (ctx.alive()) add(main, errorPanel(error, "Listing ports"));
    return;
  }
  if (!ctx.alive()) return;
  const nameOf = platform ? () => null : await groupNames(session, page.results.flatMap((p) => p.security_group_ids));
  if (!ctx.alive()) return;
  const columns = [{ label: "Port" }, { label: "Instance" }, { label: "Host" }, { label: "Addresses" }, { label: "Security groups" }];
  if (platform) columns.splice(1, 0, { label: "Client", className: "num" }, { label: "Project / region" });
  add(main, 
    h("p.summary", null, `${fmtNumber(page.count)} port${page.count === 1 ? "" : "s"}`),
    table({
      label: "Ports",
      columns,
      rows: page.results.map((p) => {
        const cells = [
          h("a.mono", { href: `#/ports/${p.id}`, title: p.id }, shortId(p.id)),
          h("span", { title: p.instance_id }, p.instance_name),
          [p.host, h("span.muted.mono", null, ` ${p.device}`)],
          h("span.mono", null, [...p.fixed_ips, p.mac_address].join(" ")),
          groupLinks(p.security_group_ids, nameOf, platform),
        ];
        if (platform) cells.splice(1, 0, h("span.num", null, String(p.client_id)), `${p.project_id} / ${p.region_id}`);
        return cells;
      }),
      empty: platform ? "No ports registered." : "No ports in this project and region. The platform registers them when instances start.",
    }),
  );
}
portsPage.pageName = "ports";

function groupLinks(ids, nameOf, plain) {
  if (!ids.length) return h("span.muted", null, "none");
  return h(
    "ul.inline-list",
    null,
    ids.map((id) => h("li", null, plain ? h("span.mono", { title: id }, shortId(id)) : h("a", { href: `#/groups/${id}` }, nameOf(id) || shortId(id)))),
  );
}

export async function portPage(ctx, id) {
  const { main, session } = ctx;
  const platform = session.role === "platform";
  add(main, h("p.breadcrumb", null, h("a", { href: "#/ports" }, "Ports"), " / ", h("span.mono", { "aria-current": "page" }, shortId(id))));
  let port;
  let effective = null;
  let effectiveError = null;
  try {
    const [p, e] = await Promise.allSettled([api.get(`/palisade/v1/ports/${id}`), platform ? Promise.resolve(null) : api.get(`/palisade/v1/ports/${id}/effective-rules`)]);
    if (p.status === "rejected") throw p.reason;
    port = p.value;
    if (e.status === "fulfilled") effective = e.value;
    else effectiveError = e.reason;
  } catch (error) {
    if (!ctx.alive()) return;
    ctx.setTitle("Port");
    add(main, h("h1", null, "Port"), errorPanel(error, "Loading the port"));
    return;
  }
  if (!ctx.alive()) return;
  ctx.setTitle(`Port ${shortId(id)}`);
  const nameOf = platform ? () => null : await groupNames(session, port.security_group_ids);
  if (!ctx.alive()) return;
  add(main, 
    h("div.page-head", null, h("h1", null, `Port of ${port.instance_name}`), platform ? null : h("div.page-actions", null, h("a.button", { href: `#/check?port=${port.id}` }, "Check a flow for this port"))),
    h(
      "dl.facts",
      null,
      fact("Port ID", h("span.mono", null, port.id)),
      fact("Instance", [port.instance_name, " ", h("span.mono.muted", null, `(${port.instance_id})`)]),
      fact("Host", [port.host, " ", h("span.mono.muted", null, port.device)]),
      fact("Addresses", h("span.mono", null, port.fixed_ips.join(", ") || "none")),
      fact("MAC", h("span.mono", null, port.mac_address)),
      fact("Client, project, region", `${port.client_id}, ${port.project_id}, ${port.region_id}`),
      fact("Security groups", groupLinks(port.security_group_ids, nameOf, platform)),
    ),
  );
  if (platform) {
    add(main, h("p.muted", null, "Effective rules are shown to the port's tenant: they come from the tenant's groups."));
    return;
  }
  if (effectiveError) {
    add(main, errorPanel(effectiveError, "Loading the effective rules"));
    return;
  }
  add(main, h("h2", null, "Effective rules"), h("p.muted", null, "The rules of every group on the port, merged in binding order. Anything no rule allows is dropped; replies to allowed connections pass (stateful)."));
  add(main, ...effectiveTables(effective));
  if (effective.remote_groups.length) {
    add(main, 
      h("h2", null, "Remote group members"),
      table({
        label: "Remote group members",
        columns: [{ label: "Group" }, { label: "IPv4" }, { label: "IPv6" }],
        rows: effective.remote_groups.map((g) => [h("a.mono", { href: `#/groups/${g.id}` }, shortId(g.id)), h("span.mono", null, g.ipv4.join(" ") || "—"), h("span.mono", null, g.ipv6.join(" ") || "—")]),
      }),
    );
  }
}
portPage.pageName = "port";

function fact(label, value) {
  return h("div", null, h("dt", null, label), h("dd", null, value));
}

/// The effective rules of a port as two tables; `highlight` marks the deciding rule of a verdict.
function effectiveTables(effective, { only, decided, matching = [] } = {}) {
  const groupName = new Map(effective.security_groups.map((g) => [g.id, g.name]));
  const out = [];
  for (const [direction, title] of [["ingress", "Ingress"], ["egress", "Egress"]]) {
    if (only && only !== direction) continue;
    const rules = effective[direction];
    const columns = [{ label: "#", className: "num" }, { label: "Group" }, { label: "Ether type" }, { label: "Protocol" }, { label: "Ports" }, { label: "Remote" }, { label: "Description" }];
    if (only) columns.push({ label: "Verdict" });
    const rows = rules.map((r, i) => {
      const isDecider = decided && decided.rule_id === r.id;
      const isMatch = matching.some((m) => m.rule_id === r.id);
      const cells = [
        h("span.num", null, String(i + 1)),
        h("a", { href: `#/groups/${r.security_group_id}` }, r.security_group_name || groupName.get(r.security_group_id) || shortId(r.security_group_id)),
        r.ethertype,
        protocolText(r.protocol),
        portsText(r),
        h("span.mono", null, r.remote_ip_prefix || (r.remote_group_id ? `group ${shortId(r.remote_group_id)}` : "Anywhere")),
        r.description || h("span.muted", null, "—"),
      ];
      if (only) cells.push(isDecider ? badge("Deciding rule", "ok") : isMatch ? badge("Also matches", "neutral") : h("span.muted", null, "—"));
      return { cells, className: isDecider ? "decider" : null, attrs: { "data-rule-id": r.id, "aria-current": isDecider ? "true" : null } };
    });
    out.push(
      only ? null : h("h3", null, `${title} (${rules.length})`),
      table({ label: `${title} rules of the port`, columns, rows, empty: `No ${direction} rule: every new ${direction} connection is dropped.` }),
    );
  }
  return out.filter(Boolean);
}

// ---- check a flow -------------------------------------------------------------------------------

export async function checkPage(ctx) {
  const { main, session, query } = ctx;
  ctx.setTitle("Check a flow");
  add(main, 
    h("div.page-head", null, h("h1", null, "Check a flow")),
    h("p.muted", null, "Would this connection be allowed, and which rule decides? Asked of the same engine the hosts' nftables tables are built from."),
  );
  let ports;
  try {
    ports = await api.get(`/palisade/v1/ports${api.query({ project_id: session.project, region_id: session.region })}`);
  } catch (error) {
    if (ctx.alive()) add(main, errorPanel(error, "Listing ports"));
    return;
  }
  if (!ctx.alive()) return;
  const wanted = query.get("port");
  const portOptions = ports.results.map((p) => ({ value: p.id, label: `${p.instance_name} · ${p.fixed_ips.join(", ") || p.mac_address} (${shortId(p.id)})` }));
  if (wanted && !portOptions.some((o) => o.value === wanted)) portOptions.unshift({ value: wanted, label: wanted });
  if (portOptions.length === 0) portOptions.push({ value: "", label: "No ports in this project and region" });
  const port = field({ label: "Port", name: "port_id", kind: "select", value: wanted || portOptions[0].value, options: portOptions });
  const direction = field({ label: "Direction", name: "direction", kind: "select", value: query.get("direction") || "ingress", options: [{ value: "ingress", label: "Ingress (to the port)" }, { value: "egress", label: "Egress (from the port)" }] });
  const remote = field({ label: "Remote IP", name: "remote_ip", value: query.get("remote") || "", hint: "The source of an ingress packet, the destination of an egress one", attrs: { class: "mono" } });
  const protocol = field({ label: "Protocol", name: "protocol", kind: "select", value: query.get("protocol") || "tcp", options: PROTOCOLS.map((p) => ({ value: p, label: p.toUpperCase() })) });
  const dport = field({ label: "Destination port", name: "port", value: query.get("dport") || "", attrs: { inputmode: "numeric" }, hint: "For TCP, UDP, SCTP, DCCP and UDP-Lite" });
  const icmpType = field({ label: "ICMP type", name: "icmp_type", attrs: { inputmode: "numeric" } });
  const icmpCode = field({ label: "ICMP code", name: "icmp_code", attrs: { inputmode: "numeric" } });
  const sync = () => {
    const icmp = protocol.control.value === "icmp" || protocol.control.value === "ipv6-icmp";
    icmpType.wrap.hidden = !icmp;
    icmpCode.wrap.hidden = !icmp;
    dport.wrap.hidden = icmp;
  };
  protocol.control.addEventListener("change", sync);
  sync();
  const errorBox = formError();
  const check = h("button.primary", { type: "submit" }, "Check");
  const form = h("form.check-form", { novalidate: true }, errorBox, h("div.grid", null, port.wrap, direction.wrap, remote.wrap, protocol.wrap, dport.wrap, icmpType.wrap, icmpCode.wrap), h("div.actions", null, check));
  const result = h("section.verdict-area", { "aria-live": "polite", "aria-label": "Verdict" });
  add(main, form, result);

  const num = (v) => {
    const t = v.trim();
    if (t === "") return undefined;
    return /^\d+$/.test(t) ? Number(t) : t;
  };
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors(form);
    clear(result);
    const body = { port_id: port.control.value, direction: direction.control.value, remote_ip: remote.control.value.trim(), protocol: protocol.control.value };
    if (!dport.wrap.hidden && num(dport.control.value) !== undefined) body.port = num(dport.control.value);
    if (!icmpType.wrap.hidden && num(icmpType.control.value) !== undefined) body.icmp_type = num(icmpType.control.value);
    if (!icmpCode.wrap.hidden && num(icmpCode.control.value) !== undefined) body.icmp_code = num(icmpCode.control.value);
    if (!body.port_id) {
      showErrors(form, new ApiError(400, { message: "Choose a port.", invalid_fields: { port_id: ["There is no port to check in this project and region."] } }));
      return;
    }
    check.disabled = true;
    try {
      const [answer, effective] = await Promise.all([api.post("/palisade/v1/verdicts", body), api.get(`/palisade/v1/ports/${body.port_id}/effective-rules`)]);
      if (!ctx.alive()) return;
      add(result, ...verdictView(body, answer, effective));
    } catch (error) {
      showErrors(form, error);
    } finally {
      check.disabled = false;
    }
  });
  if (query.get("remote")) form.requestSubmit();
}
checkPage.pageName = "check";

function verdictView(flow, answer, effective) {
  const allowed = answer.allowed;
  const what = [
    flow.direction,
    flow.protocol.toUpperCase(),
    flow.port !== undefined ? `port ${flow.port}` : "",
    flow.icmp_type !== undefined ? `type ${flow.icmp_type}` : "",
    flow.direction === "ingress" ? `from ${flow.remote_ip}` : `to ${flow.remote_ip}`,
    `(${answer.connection} connection)`,
  ]
    .filter(Boolean)
    .join(" ");
  const decided = answer.decided_by;
  const rules = effective[flow.direction];
  const index = decided ? rules.findIndex((r) => r.id === decided.rule_id) : -1;
  const groupName = decided ? effective.security_groups.find((g) => g.id === decided.security_group_id)?.name || shortId(decided.security_group_id) : null;
  const headline = h(
    `div.verdict.${allowed ? "verdict-allow" : "verdict-deny"}`,
    null,
    h("span.verdict-word", null, allowed ? "ALLOW" : "DENY"),
    h("span.verdict-flow", null, what),
  );
  const decidedText = decided
    ? h("p.decided", null, "Decided by ", h("strong", null, `${flow.direction === "ingress" ? "Ingress" : "Egress"} rule ${index + 1}`), " of group ", h("a", { href: `#/groups/${decided.security_group_id}` }, groupName), ".")
    : answer.connection === "established"
      ? h("p.decided", null, "Replies of an established connection pass: the filter is stateful.")
      : h("p.decided", null, h("strong", null, "No rule matches: dropped by the default policy."));
  return [
    h("h2", null, "Verdict"),
    headline,
    h("p.reason.muted", null, answer.reason),
    decidedText,
    h("h3", null, `${flow.direction === "ingress" ? "Ingress" : "Egress"} rules of the port`),
    ...effectiveTables(effective, { only: flow.direction, decided, matching: answer.matching_rules }),
  ];
}

// ---- quotas -------------------------------------------------------------------------------------

export async function quotasPage(ctx) {
  const { main, session, query } = ctx;
  const platform = session.role === "platform";
  ctx.setTitle("Quotas");
  add(main, h("div.page-head", null, h("h1", null, "Quotas")), h("p.muted", null, `Usage against the limits of project ${session.project}, region ${session.region}.`));
  let client = null;
  if (platform) {
    client = query.get("client") || "";
    const clientField = field({ label: "Client", name: "client", value: client, attrs: { inputmode: "numeric" }, hint: "The platform reads any client's quotas" });
    const form = h("form.filters", { novalidate: true, "aria-label": "Choose a client" }, clientField.wrap, h("div.filter-actions", null, h("button", { type: "submit" }, "Show")));
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      ctx.navigate("/quotas", { client: clientField.control.value.trim() });
    });
    add(main, form);
    if (!client) {
      add(main, h("p", null, "Enter a client id to see its quotas."));
      return;
    }
  }
  let quota;
  try {
    quota = await api.get(`/palisade/v1/quotas/${session.project}/${session.region}${api.query({ client_id: client })}`);
  } catch (error) {
    if (ctx.alive()) add(main, errorPanel(error, "Reading quotas"));
    return;
  }
  if (!ctx.alive()) return;
  add(main, 
    h(
      "div.quotas",
      null,
      bar("Security groups", quota.security_group_count_usage, quota.security_group_count_limit),
      bar("Security group rules", quota.security_group_rule_count_usage, quota.security_group_rule_count_limit),
    ),
  );
}
quotasPage.pageName = "quotas";

function bar(label, usage, limit) {
  const id = `meter-${label.replaceAll(" ", "-").toLowerCase()}`;
  if (limit < 0) {
    return h("div.quota", null, h("div.quota-head", null, h("span.quota-label", null, label), h("span.quota-figures", null, `${fmtNumber(usage)} used · unlimited`)));
  }
  const share = limit === 0 ? 1 : usage / limit;
  const meter = h("meter", { id, min: 0, max: Math.max(limit, 1), value: Math.min(usage, Math.max(limit, 1)), low: Math.max(limit, 1) * 0.8, high: Math.max(limit, 1) * 0.95, optimum: 0 });
  return h(
    "div.quota",
    null,
    h("div.quota-head", null, h("label.quota-label", { for: id }, label), h("span.quota-figures", null, `${fmtNumber(usage)} of ${fmtNumber(limit)} (${usage > 0 && share < 0.01 ? "under 1" : Math.round(share * 100)}%)`)),
    meter,
  );
}
