// The platform's view: the host agents and whether each has applied the current policy.

import * as api from "./api.js";
import { h, add, clear, table, time, errorPanel, badge, fmtNumber, poll } from "./dom.js";

export async function agentsPage(ctx) {
  const { main } = ctx;
  ctx.setTitle("Agents");
  const summary = h("p.summary", { role: "status" });
  const body = h("div");
  add(main, 
    h("div.page-head", null, h("h1", null, "Agents")),
    h("p.muted", null, "Each host's agent reports the policy revision it applied. An agent is in sync when it has applied the current revision. Refreshed every 5 seconds."),
    summary,
    body,
  );
  await poll(ctx, {
    fetch: () => api.get("/palisade/v1/agents"),
    onError: (error) => add(clear(body), errorPanel(error, "Listing agents")),
    tick: () => 5000,
    key: (list) => JSON.stringify(list),
    draw: (list) => {
      const inSync = list.results.filter((a) => a.in_sync).length;
      summary.textContent = `Highest host policy revision ${fmtNumber(list.policy_revision)}: ${inSync} of ${list.count} agent${list.count === 1 ? "" : "s"} in sync.`;
      add(clear(body), 
        table({
          label: "Agents",
          columns: [{ label: "Host" }, { label: "In sync" }, { label: "Host revision", className: "num" }, { label: "Applied revision", className: "num" }, { label: "Behind", className: "num" }, { label: "Last report", className: "col-time" }],
          rows: list.results.map((a) => ({
            className: a.in_sync ? null : "out-of-sync",
            cells: [
              h("span.mono", null, a.host),
              a.in_sync ? badge("In sync", "ok") : badge("Behind", "danger"),
              h("span.num", null, fmtNumber(a.policy_revision)),
              h("span.num", null, fmtNumber(a.applied_revision)),
              h("span.num", null, a.in_sync ? "0" : fmtNumber(Math.max(0, a.policy_revision - a.applied_revision))),
              time(a.reported_at),
            ],
          })),
          empty: "No agent has reported yet. Start one with palisade agent on each host.",
        }),
      );
    },
  });
}
agentsPage.pageName = "agents";
