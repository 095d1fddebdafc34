// One security group: its rules by direction with the analysis findings next to them, the rule
// form (add and edit), tags, Copy, Revert to default and Delete.

import * as api from "./api.js";
import { ApiError } from "./api.js";
import {
  h,
  add,
  clear,
  table,
  tagList,
  time,
  errorPanel,
  field,
  showErrors,
  clearErrors,
  formDialog,
  confirmDialog,
  protocolText,
  portsText,
  shortId,
  badge,
  announce,
} from "./dom.js";
import { parseTags, groupNames, rememberName } from "./groups.js";

export const PROTOCOLS = [
  "tcp", "udp", "icmp", "ipv6-icmp", "sctp", "ah", "dccp", "egp", "esp", "gre", "igmp", "ipencap", "ipip",
  "ipv6-encap", "ipv6-frag", "ipv6-nonxt", "ipv6-opts", "ipv6-route", "ospf", "pgm", "rsvp", "udplite", "vrrp",
];

const FINDINGS = {
  duplicate: { label: "Duplicate", kind: "warn" },
  shadowed: { label: "Shadowed", kind: "warn" },
  overly_broad: { label: "Overly broad", kind: "danger" },
  empty_remote_group: { label: "Empty remote group", kind: "warn" },
  unmatchable: { label: "Never matches", kind: "warn" },
};

/// A one-line explanation of a finding, naming other rules by their place in the tables.
function explain(finding, place) {
  switch (finding.kind) {
    case "duplicate":
      return `Matches exactly what ${place(finding.same_as)} matches: one of them can go.`;
    case "shadowed":
      return `Everything it allows is already allowed by ${place(finding.covered_by)}: removing it changes nothing.`;
    case "overly_broad":
      return `It ${finding.reason}.`;
    case "empty_remote_group":
      return `Its remote group ${shortId(finding.remote_group_id)} has no ports with addresses, so it matches nothing today.`;
    case "unmatchable":
      return `It can never match: ${finding.reason}.`;
    default:
      return finding.reason || finding.kind;
  }
}

const numberOrText = (value) => {
  const text = String(value ?? "").trim();
  if (text === "") return null;
  return /^\d+$/.test(text) ? Number(text) : text;
};

const PORTED = ["tcp", "udp", "sctp", "dccp", "udplite"];

/// What is wrong with the port fields of a TCP/UDP-like rule (ports 1 to 65535, min ≤ max).
function portErrors(body) {
  const errors = {};
  if (!PORTED.includes(body.protocol)) return errors;
  const ok = {};
  for (const name of ["port_range_min", "port_range_max"]) {
    const value = body[name];
    if (value === null) continue;
    if (!Number.isInteger(value) || value < 1 || value > 65535) {
      errors[name] = [`Invalid value for port ${value}: ${body.protocol.toUpperCase()} ports are 1 to 65535`];
    } else {
      ok[name] = value;
    }
  }
  if (ok.port_range_min !== undefined && ok.port_range_max !== undefined && ok.port_range_max < ok.port_range_min) {
    errors.port_range_max = ["Port range max must not be below Port range min"];
  }
  return errors;
}

export async function groupPage(ctx, id) {
  const { main, session } = ctx;
  const base = `/cloud/v1/securitygroups/${session.project}/${session.region}/${id}`;
  const content = h("div.group-page");
  let pendingNote = null;
  const note = (text) => {
    pendingNote = text;
    announce(text);
  };
  add(main, h("p.breadcrumb", null, h("a", { href: "#/groups" }, "Security groups"), " / "), content);

  async function draw(focusSelector) {
    let group;
    let analysis = null;
    let analysisError = null;
    let instances = [];
    try {
      const [g, a, i] = await Promise.allSettled([api.get(base), api.get(`${base}/analysis`), api.get(`${base}/instances`)]);
      if (g.status === "rejected") throw g.reason;
      group = g.value;
      if (a.status === "fulfilled") analysis = a.value;
      else analysisError = a.reason;
      if (i.status === "fulfilled") instances = i.value.results || [];
    } catch (error) {
      if (!ctx.alive()) return;
      clear(content);
      ctx.setTitle("Security group");
      add(content, h("h1", null, "Security group"), errorPanel(error, "Loading the security group"));
      return;
    }
    if (!ctx.alive()) return;
    rememberName(group.id, group.name);
    ctx.setTitle(group.name);
    const remoteIds = group.security_group_rules.map((r) => r.remote_group_id).filter(Boolean);
    const nameOf = await groupNames(session, remoteIds);
    if (!ctx.alive()) return;
    clear(content);
    const crumb = main.querySelector(".breadcrumb");
    if (crumb.childNodes.length > 2) crumb.lastChild.remove();
    add(crumb, h("span", { "aria-current": "page" }, group.name));
    if (pendingNote) {
      // The page's own note replaces the message the page opened with.
      for (const stale of main.querySelectorAll(":scope > .flash")) stale.remove();
      add(content, h("div.flash", null, pendingNote));
      pendingNote = null;
    }
    render(group, analysis, analysisError, instances, nameOf);
    const target = focusSelector && content.querySelector(focusSelector);
    if (target) target.focus();
  }

  function render(group, analysis, analysisError, instances, nameOf) {
    const userTags = group.tags_v2.filter((t) => !t.read_only);
    const actions = h(
      "div.page-actions",
      null,
      h("button.primary", { type: "button", "data-focus": "add-rule", onClick: () => ruleDialog({ group, onSaved: () => draw("[data-focus=add-rule]") }) }, "Add rule"),
      h("button", { type: "button", onClick: () => copyDialog(group) }, "Copy"),
      h("button", { type: "button", "data-focus": "revert", onClick: () => revertDialog(group) }, "Revert to default"),
      h("button.danger", { type: "button", onClick: () => deleteDialog(group) }, "Delete"),
    );
    add(content, 
      h("div.page-head", null, h("h1", null, group.name), actions),
      group.description ? h("p.lead", null, group.description) : null,
      h(
        "dl.facts",
        null,
        h("div", null, h("dt", null, "ID"), h("dd.mono", null, group.id)),
        h("div", null, h("dt", null, "Revision"), h("dd", null, String(group.revision_number))),
        h("div", null, h("dt", null, "Created"), h("dd", null, time(group.created_at))),
        h("div", null, h("dt", null, "Updated"), h("dd", null, time(group.updated_at))),
        h("div", null, h("dt", null, "Region"), h("dd", null, `${group.region} (${group.region_id})`)),
        h(
          "div",
          null,
          h("dt", null, "Used by"),
          h("dd", null, instances.length === 0 ? "No instance" : instances.map((inst, i) => [i ? ", " : "", inst.name, ` (${inst.ports.length} port${inst.ports.length === 1 ? "" : "s"})`])),
        ),
      ),
      h(
        "section.tags-section",
        { "aria-labelledby": "tags-heading" },
        h("h2", { id: "tags-heading" }, "Tags"),
        h("div.tags-row", null, tagList(group.tags_v2), h("button.small", { type: "button", "data-focus": "edit-tags", onClick: () => tagsDialog(group, userTags) }, "Edit tags")),
      ),
    );

    // Findings by rule, and each rule's place ("Ingress rule 2") to name it in explanations.
    const findingsByRule = new Map();
    for (const f of analysis?.findings || []) {
      if (!findingsByRule.has(f.rule_id)) findingsByRule.set(f.rule_id, []);
      findingsByRule.get(f.rule_id).push(f);
    }
    const byDirection = { ingress: [], egress: [] };
    for (const rule of group.security_group_rules) byDirection[rule.direction]?.push(rule);
    const places = new Map();
    for (const [direction, rules] of Object.entries(byDirection)) {
      rules.forEach((r, i) => places.set(r.id, `${direction === "ingress" ? "Ingress" : "Egress"} rule ${i + 1}`));
    }
    const place = (ruleId) => places.get(ruleId) || `rule ${shortId(ruleId)}`;

    const count = analysis ? analysis.findings.length : 0;
    add(content, 
      analysisError
        ? h("p.notice.notice-warn", null, `The analysis could not be loaded: ${analysisError.message}`)
        : h(
            `p.analysis-summary${count ? ".has-findings" : ""}`,
            null,
            h("strong", null, "Analysis: "),
            count === 0 ? "no duplicate, shadowed, overly broad or unmatchable rules, and no remote group without members." : `${count} finding${count === 1 ? "" : "s"}, shown next to the rules they concern.`,
          ),
    );

    for (const [direction, title] of [["ingress", "Ingress"], ["egress", "Egress"]]) {
      const rules = byDirection[direction];
      const headingId = `${direction}-heading`;
      const rows = rules.map((rule, i) => {
        const findings = findingsByRule.get(rule.id) || [];
        const remote = rule.remote_group_id
          ? h("a", { href: `#/groups/${rule.remote_group_id}` }, `group ${nameOf(rule.remote_group_id) || shortId(rule.remote_group_id)}`)
          : rule.remote_ip_prefix || h("span.muted", null, "Anywhere");
        return {
          attrs: { "data-rule-id": rule.id },
          className: findings.length ? "has-finding" : null,
          cells: [
            h("span.num", null, String(i + 1)),
            rule.ethertype,
            protocolText(rule.protocol),
            portsText(rule),
            h("span.mono", null, remote),
            rule.description ? h("span.clip", { title: rule.description }, rule.description) : h("span.muted", null, "—"),
            findings.length
              ? h("ul.findings", null, findings.map((f) => h("li", null, badge(FINDINGS[f.kind]?.label || f.kind, FINDINGS[f.kind]?.kind || "warn"), " ", h("span.finding-text", null, explain(f, place)))))
              : h("span.muted", null, "—"),
            h(
              "div.row-actions",
              null,
              h("button.small", { type: "button", "aria-label": `Edit ${place(rule.id)}`, "data-focus": `edit-${rule.id}`, onClick: () => ruleDialog({ group, rule, onSaved: () => draw("[data-focus=add-rule]") }) }, "Edit"),
              h("button.small.danger-text", { type: "button", "aria-label": `Delete ${place(rule.id)}`, onClick: () => deleteRuleDialog(rule, place(rule.id)) }, "Delete"),
            ),
          ],
        };
      });
      add(content, 
        h(
          "section.rules",
          { "aria-labelledby": headingId, "data-direction": direction },
          h("h2", { id: headingId }, title, h("span.count", null, ` (${rules.length})`)),
          table({
            label: `${title} rules`,
            columns: [
              { label: "#", className: "num" },
              { label: "Ether type" },
              { label: "Protocol" },
              { label: "Ports" },
              { label: "Remote" },
              { label: "Description" },
              { label: "Findings", className: "col-findings" },
              { label: "Actions", className: "col-actions" },
            ],
            rows,
            empty: direction === "ingress" ? "No ingress rules: nothing may connect to ports of this group." : "No egress rules: ports of this group may not open any connection.",
          }),
        ),
      );
    }
  }

  /// The rule form: v1 add (synchronous, field errors at once) or v1 replace for an edit (the rule
  /// is replaced atomically by one with a new id; nothing is half-saved either way).
  async function ruleDialog({ group, rule, onSaved }) {
    const editing = Boolean(rule);
    const r = rule || { direction: "ingress", ethertype: "IPv4", protocol: "tcp" };
    const direction = field({ label: "Direction", name: "direction", kind: "select", value: r.direction, options: [{ value: "ingress", label: "Ingress (incoming)" }, { value: "egress", label: "Egress (outgoing)" }] });
    const ethertype = field({ label: "Ether type", name: "ethertype", kind: "select", value: r.ethertype, options: [{ value: "IPv4", label: "IPv4" }, { value: "IPv6", label: "IPv6" }] });
    const protocol = field({
      label: "Protocol",
      name: "protocol",
      kind: "select",
      value: r.protocol ?? "any",
      options: [{ value: "any", label: "Any protocol" }, ...PROTOCOLS.map((p) => ({ value: p, label: p.toUpperCase() }))],
    });
    const min = field({ label: "Port range min", name: "port_range_min", value: r.port_range_min ?? "", attrs: { inputmode: "numeric" }, hint: "First port; empty: all ports" });
    const max = field({ label: "Port range max", name: "port_range_max", value: r.port_range_max ?? "", attrs: { inputmode: "numeric" }, hint: "Last port; empty: same as min" });
    const prefix = field({ label: "Remote IP prefix", name: "remote_ip_prefix", value: r.remote_ip_prefix ?? "", hint: "A CIDR such as 10.0.0.0/8; empty: anywhere", attrs: { class: "mono" } });
    const listId = "remote-group-options";
    const remoteGroup = field({ label: "Remote group", name: "remote_group_id", value: r.remote_group_id ?? "", hint: "A group id: traffic of that group's ports. Empty: none.", attrs: { list: listId, class: "mono" } });
    const datalist = h("datalist", { id: listId });
    const description = field({ label: "Description", name: "description", value: r.description ?? "" });
    const hintFor = () => {
      const p = protocol.control.value;
      const icmp = p === "icmp" || p === "ipv6-icmp";
      const ported = ["tcp", "udp", "sctp", "dccp", "udplite"].includes(p);
      min.wrap.querySelector(".hint").textContent = icmp ? "ICMP type; empty: all types" : ported ? "First port (1–65535); empty: all ports" : "Only for TCP, UDP, SCTP, DCCP, UDP-Lite and ICMP";
      max.wrap.querySelector(".hint").textContent = icmp ? "ICMP code (needs a type)" : ported ? "Last port; empty: same as min" : "Only for TCP, UDP, SCTP, DCCP, UDP-Lite and ICMP";
    };
    protocol.control.addEventListener("change", hintFor);
    hintFor();
    const { dialog, form, submit: save } = formDialog({
      title: editing ? "Edit rule" : "Add rule",
      className: "wide",
      formClass: ".rule-form",
      submitLabel: "Save rule",
      content: [h("div.grid", null, direction.wrap, ethertype.wrap, protocol.wrap, min.wrap, max.wrap, prefix.wrap, remoteGroup.wrap, description.wrap), datalist],
    });
    // Suggest the groups of the project for "Remote group" (the first page is enough to help).
    api
      .get(`/cloud/v1/securitygroups/${session.project}/${session.region}?limit=100`)
      .then((page) => add(datalist, ...page.results.map((g) => h("option", { value: g.id, label: g.name }))))
      .catch(() => {});
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      clearErrors(form);
      const body = {
        direction: direction.control.value,
        ethertype: ethertype.control.value,
        protocol: protocol.control.value,
        port_range_min: numberOrText(min.control.value),
        port_range_max: numberOrText(max.control.value),
        remote_ip_prefix: prefix.control.value.trim() || null,
        remote_group_id: remoteGroup.control.value.trim() || null,
        description: description.control.value,
      };
      save.disabled = true;
      try {
        if (editing) {
          await api.put(`/cloud/v1/securitygrouprules/${session.project}/${session.region}/${rule.id}`, { ...body, security_group_id: group.id });
        } else {
          await api.post(`${base}/rules`, body);
        }
        dialog.close();
        note(editing ? "Rule saved." : "Rule added.");
        await onSaved();
      } catch (error) {
        if (error instanceof ApiError && error.status === 400) {
          // The API reports schema errors (a port above 65535) before range errors of the
          // protocol (port 0 for TCP), one phase per answer; add the latter for the port fields it
          // did not name, so one answer shows everything wrong with the ports.
          for (const [name, reasons] of Object.entries(portErrors(body))) {
            if (!(name in error.invalidFields)) error.invalidFields[name] = reasons;
          }
        }
        showErrors(form, error, { security_group_id: "remote_group_id" });
      } finally {
        save.disabled = false;
      }
    });
  }

  function deleteRuleDialog(rule, placeName) {
    confirmDialog({
      title: "Delete rule",
      message: `Delete ${placeName} (${rule.direction} ${protocolText(rule.protocol)} ${portsText(rule)} ${rule.remote_ip_prefix || (rule.remote_group_id ? "from a group" : "anywhere")})? Connections it allowed are cut.`,
      confirmLabel: "Delete rule",
      danger: true,
      action: async () => {
        await api.del(`/cloud/v1/securitygrouprules/${session.project}/${session.region}/${rule.id}`);
        note("Rule deleted.");
        setTimeout(() => draw("[data-focus=add-rule]"), 0);
      },
    });
  }

  function tagsDialog(group, userTags) {
    const readOnly = group.tags_v2.filter((t) => t.read_only);
    const tags = field({
      label: "Tags",
      name: "tags",
      kind: "textarea",
      value: userTags.map((t) => (t.value === "" ? t.key : `${t.key}=${t.value}`)).join("\n"),
      hint: "key=value, one per line. Removing a line removes the tag.",
      attrs: { rows: 5, class: "mono" },
    });
    const { dialog, form, submit: save } = formDialog({
      title: "Edit tags",
      formClass: ".stack",
      submitLabel: "Save tags",
      content: [tags.wrap, readOnly.length ? h("p.muted", null, "Read-only tags (set by the platform): ", tagList(readOnly)) : null],
    });
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      clearErrors(form);
      let body;
      try {
        body = parseTags(tags.control.value);
      } catch (error) {
        showErrors(form, new ApiError(400, { message: "Check the tags.", invalid_fields: { tags: [error.message] } }));
        return;
      }
      save.disabled = true;
      try {
        await api.put(`${base}/metadata`, body);
        dialog.close();
        note("Tags saved.");
        await draw("[data-focus=edit-tags]");
      } catch (error) {
        showErrors(form, error, { body: "tags" });
      } finally {
        save.disabled = false;
      }
    });
  }

  function copyDialog(group) {
    const suggested = `${group.name}-copy`.slice(0, 63);
    const name = field({ label: "Name", name: "name", value: suggested, hint: "The name of the new group" });
    const { dialog, form, submit: save } = formDialog({
      title: `Copy ${group.name}`,
      formClass: ".stack",
      submitLabel: "Copy",
      content: [h("p", null, "A new group with the same description, rules (new ids) and tags."), name.wrap],
    });
    name.control.select();
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      clearErrors(form);
      save.disabled = true;
      try {
        const copy = await api.post(`${base}/copy`, { name: name.control.value.trim() });
        dialog.close();
        ctx.flash(`Copied ${group.name} to ${copy.name}.`);
        ctx.navigate(`/groups/${copy.id}`);
      } catch (error) {
        showErrors(form, error);
      } finally {
        save.disabled = false;
      }
    });
  }

  function revertDialog(group) {
    confirmDialog({
      title: "Revert to default",
      message: `Replace every rule of ${group.name} with the default rules (allow all outgoing traffic, IPv4 and IPv6)? Its ${group.security_group_rules.length} rule(s) are deleted; name, description and tags stay.`,
      confirmLabel: "Revert to default",
      danger: true,
      action: async () => {
        await api.post(`${base}/revert`);
        note("Reverted to the default rules.");
        setTimeout(() => draw("[data-focus=revert]"), 0);
      },
    });
  }

  function deleteDialog(group) {
    confirmDialog({
      title: `Delete ${group.name}`,
      message: "Delete this group and its rules? Rules of other groups that name it as their remote group are deleted too. This cannot be undone.",
      confirmLabel: "Delete security group",
      danger: true,
      action: async () => {
        await api.del(base);
        ctx.flash(`Deleted security group ${group.name}.`);
        ctx.navigate("/groups");
      },
      onError: (error) => (error instanceof ApiError && error.exceptionClass === "SecurityGroupInUse" ? inUse(error) : null),
    });
  }

  /// The ports and instances that keep a group from being deleted (the 409's info), with names.
  function inUse(error) {
    const box = h("div.in-use", null, h("p", null, h("strong", null, "Still in use. "), "Remove the group from these instances' ports first:"));
    const list = h("ul.in-use-list");
    add(box, list);
    const ports = error.info?.ports || [];
    const instances = error.info?.instances || [];
    const fallback = () => {
      clear(list);
      for (const id of instances) add(list, h("li", null, "Instance ", h("span.mono", null, id)));
      for (const id of ports) add(list, h("li", null, "Port ", h("a.mono", { href: `#/ports/${id}` }, id)));
    };
    fallback();
    api
      .get(`${base}/instances`)
      .then((answer) => {
        clear(list);
        for (const inst of answer.results || []) {
          add(list, 
            h(
              "li",
              null,
              "Instance ",
              h("strong", null, inst.name),
              " ",
              h("span.mono.muted", null, `(${inst.id})`),
              ": ",
              inst.ports.map((p, i) => [i ? ", " : "", "port ", h("a.mono", { href: `#/ports/${p.id}` }, shortId(p.id)), ` ${p.fixed_ips.join(" ")}`]),
            ),
          );
        }
      })
      .catch(fallback);
    return box;
  }

  await draw();
}
groupPage.pageName = "group";

