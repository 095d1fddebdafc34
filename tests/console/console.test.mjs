// End-to-end tests of the web console (/console) in Debian's headless Chromium, driven by
// Playwright (playwright-core, no downloaded browser), with axe-core for accessibility.
//
// One `palisade serve` on a fresh data dir and a free port, keys made with `palisade keys create`
// (as tests/sdk/conftest.py does). The flow walks issue 13's "Done when" list; every page is
// checked with axe (no serious or critical violation) and photographed in light and dark.
//
//   PALISADE_BIN=path         the binary (default target/debug/palisade)
//   PALISADE_CONSOLE_DOCS=1   write the screenshots to docs/console/ and the timing to
//                             docs/benchmarks.md (default: target/console/, nothing in docs/)
//   CHROMIUM=path             the browser (default /usr/bin/chromium)

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, execFileSync } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const require = createRequire(import.meta.url);
const HERE = path.dirname(fileURLToPath(import.meta.url));
const REPO = path.resolve(HERE, "../..");
const BIN = process.env.PALISADE_BIN || path.join(REPO, "target/debug/palisade");
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const DOCS = process.env.PALISADE_CONSOLE_DOCS === "1";
const SHOTS = DOCS ? path.join(REPO, "docs/console") : path.join(REPO, "target/console");
const AXE = fs.readFileSync(require.resolve("axe-core/axe.min.js"), "utf8");
const BULK = Number(process.env.PALISADE_CONSOLE_BULK || 10000);
// The target is 300 ms; the assertion is generous because CI shares two cores with other work.
const FIRST_PAGE_BOUND_MS = 1500;

const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("PALISADE_")));
let dataDir;
let server;
let base;
let keys = {};
let browser;
const problems = [];
const shots = [];

// ---- the server ---------------------------------------------------------------------------------

function createKey(args) {
  const out = execFileSync(BIN, ["keys", "create", "--data-dir", dataDir, ...args], { env, encoding: "utf8" });
  const token = out.trim().split("\n").pop().trim();
  assert.match(token, /^\d+\$[0-9a-f]{64}$/, `keys create printed ${out}`);
  return token;
}

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

async function waitHealthy() {
  const deadline = Date.now() + 30000;
  while (Date.now() < deadline) {
    if (server.exitCode !== null) throw new Error(`palisade serve exited: ${fs.readFileSync(path.join(dataDir, "serve.log"), "utf8")}`);
    try {
      if ((await fetch(`${base}/healthz`)).ok) return;
    } catch {
      // Not listening yet.
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error("palisade serve did not become healthy in 30 s");
}

async function call(key, method, urlPath, body) {
  const response = await fetch(`${base}${urlPath}`, {
    method,
    headers: { Authorization: `APIKey ${key}`, "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  return { status: response.status, body: text ? JSON.parse(text) : null };
}

async function expectStatus(promise, status) {
  const answer = await promise;
  assert.equal(answer.status, status, JSON.stringify(answer.body));
  return answer.body;
}

// ---- the browser --------------------------------------------------------------------------------

async function newPage({ width = 1280, height = 800 } = {}) {
  const context = await browser.newContext({ viewport: { width, height }, colorScheme: "light", reducedMotion: "reduce" });
  const page = await context.newPage();
  page.setDefaultTimeout(10000);
  await page.addInitScript(() => {
    window.__csp = [];
    document.addEventListener("securitypolicyviolation", (e) => window.__csp.push(`${e.violatedDirective} ${e.blockedURI}`));
  });
  page.on("pageerror", (error) => problems.push(`page error: ${error.message}`));
  page.on("console", (message) => {
    const text = message.text();
    // 4xx answers the console asked for on purpose are logged by Chromium as "Failed to load resource".
    if (message.type() === "error" && !text.startsWith("Failed to load resource")) problems.push(`console error: ${text}`);
    if (/Content Security Policy|Refused to/i.test(text)) problems.push(`CSP: ${text}`);
  });
  page.on("request", (request) => {
    const url = new URL(request.url());
    if (url.origin !== base) problems.push(`request to another origin: ${request.url()}`);
    for (const key of Object.values(keys)) {
      if (request.url().includes(key.split("$")[1])) problems.push(`a key in a URL: ${url.pathname}`);
    }
  });
  return page;
}

/// Waits for the console to finish rendering `name` (main[data-page][data-state=ready]).
async function ready(page, name) {
  await page.waitForSelector(`main[data-page="${name}"][data-state="ready"]`, { timeout: 10000 });
}

async function axe(page, label) {
  await page.evaluate(AXE);
  const result = await page.evaluate(() => window.axe.run(document, { resultTypes: ["violations"] }));
  const bad = result.violations
    .filter((v) => v.impact === "serious" || v.impact === "critical")
    .map((v) => `${v.id} (${v.impact}): ${v.help} at ${v.nodes.map((n) => n.target.join(" ")).join(", ")}`);
  assert.deepEqual(bad, [], `axe on ${label}`);
}

/// axe in light and dark, and a screenshot of each (docs/console.md shows them).
async function shoot(page, name, title) {
  for (const scheme of ["light", "dark"]) {
    await page.emulateMedia({ colorScheme: scheme });
    await axe(page, `${name} (${scheme})`);
    await page.screenshot({ path: path.join(SHOTS, `${name}-${scheme}.png`) });
  }
  await page.emulateMedia({ colorScheme: "light" });
  shots.push({ name, title });
}

async function signIn(page, key) {
  await page.goto(`${base}/console`);
  await ready(page, "signin");
  await page.getByLabel("API key", { exact: true }).fill(key);
  await page.getByRole("button", { name: "Sign in", exact: true }).click();
}

/// Presses Tab until the focused element's text or label is `name` (keyboard-only use).
async function tabTo(page, name, max = 60) {
  for (let i = 0; i < max; i++) {
    await page.keyboard.press("Tab");
    const focused = await page.evaluate(() => {
      const el = document.activeElement;
      if (!el) return "";
      const label = el.labels && el.labels[0] ? el.labels[0].textContent : "";
      return (el.getAttribute("aria-label") || label || el.textContent || "").trim();
    });
    if (focused === name) return;
  }
  assert.fail(`Tab never reached "${name}"`);
}

const rows = (page, direction) => page.locator(`section[data-direction="${direction}"] tbody tr:not(.empty)`);

async function groupByName(name, project = 1) {
  const list = await expectStatus(call(keys.tenant, "GET", `/cloud/v1/securitygroups/${project}/1?name=${encodeURIComponent(name)}`), 200);
  return list.results[0] || null;
}

// Deletes the group open on `page`, `name`, through its Delete dialog: the console returns to the
// list with a flash, and the API no longer has it.
async function deleteOpenGroup(page, name) {
  await page.getByRole("button", { name: "Delete", exact: true }).click();
  const dialog = page.getByRole("dialog", { name: `Delete ${name}` });
  await dialog.getByRole("button", { name: "Delete security group" }).click();
  await ready(page, "groups");
  await page.locator(".flash", { hasText: `Deleted security group ${name}.` }).waitFor();
  assert.equal(await groupByName(name), null);
}

// ---- setup --------------------------------------------------------------------------------------

before(async () => {
  assert.ok(fs.existsSync(BIN), `no palisade binary at ${BIN}: cargo build -p palisade`);
  assert.ok(fs.existsSync(CHROMIUM), `no browser at ${CHROMIUM}: apt-get install chromium`);
  fs.mkdirSync(SHOTS, { recursive: true });
  dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "palisade-console-"));
  keys = {
    tenant: createKey(["--client-id", "1", "--user-id", "1", "--name", "console-e2e"]),
    other: createKey(["--client-id", "2", "--user-id", "2", "--name", "console-e2e-other"]),
    platform: createKey(["--role", "platform", "--name", "console-platform"]),
    agent1: createKey(["--role", "agent", "--host", "compute-1", "--name", "compute-1"]),
    agent2: createKey(["--role", "agent", "--host", "compute-2", "--name", "compute-2"]),
  };
  const port = await freePort();
  base = `http://127.0.0.1:${port}`;
  const log = fs.openSync(path.join(dataDir, "serve.log"), "w");
  server = spawn(BIN, ["serve", "--listen", `127.0.0.1:${port}`, "--data-dir", dataDir], {
    // No per-key rate limit on writes: the timing test seeds its groups as fast as the server takes them.
    env: { ...env, RUST_LOG: "info", PALISADE_RATE_LIMIT_WRITES: "0" },
    stdio: ["ignore", log, log],
  });
  await waitHealthy();
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
});

after(async () => {
  if (browser) await browser.close();
  if (server && server.exitCode === null) {
    server.kill("SIGTERM");
    await new Promise((resolve) => {
      const timer = setTimeout(() => {
        server.kill("SIGKILL");
        resolve();
      }, 15000);
      server.on("exit", () => {
        clearTimeout(timer);
        resolve();
      });
    });
  }
  if (dataDir && !process.env.PALISADE_KEEP_DATA) fs.rmSync(dataDir, { recursive: true, force: true });
});

// ---- the tests ----------------------------------------------------------------------------------

test("console files carry a strict policy and stay on this origin", async () => {
  for (const file of ["/console", "/console/js/app.js", "/console/console.css", "/console/nothing.js"]) {
    const response = await fetch(`${base}${file}`);
    const csp = response.headers.get("content-security-policy") || "";
    assert.match(csp, /default-src 'self'/, file);
    assert.match(csp, /script-src 'self'/, file);
    assert.match(csp, /frame-ancestors 'none'/, file);
    assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval|https?:/, file);
    assert.equal(response.headers.get("x-content-type-options"), "nosniff", file);
    assert.equal(response.headers.get("x-frame-options"), "DENY", file);
    assert.equal(response.status, file.endsWith("nothing.js") ? 404 : 200, file);
  }
  // The API's own answers are unchanged (JSON, no console policy needed).
  assert.equal((await fetch(`${base}/cloud/v1/tasks`)).status, 401);
});

test("a person manages groups and rules and asks why a flow is dropped", async (t) => {
  const page = await newPage();

  await t.test("sign in: a wrong key is refused next to the field, a tenant key gets in", async () => {
    await page.goto(`${base}/console`);
    await ready(page, "signin");
    await shoot(page, "signin", "Sign in");
    await page.getByLabel("API key", { exact: true }).fill("1$" + "0".repeat(64));
    await page.getByRole("button", { name: "Sign in", exact: true }).click();
    await page.locator('[data-field="api_key"] .field-error').getByText("This key was not accepted.").waitFor();
    // Keyboard only: the field has focus again; type and press Enter.
    await page.getByLabel("API key", { exact: true }).focus();
    await page.keyboard.type(keys.tenant);
    await page.keyboard.press("Enter");
    await ready(page, "groups");
    await page.getByRole("heading", { name: "Security groups", level: 1 }).waitFor();
    assert.equal(await page.evaluate(() => document.cookie), "");
    assert.equal(await page.evaluate(() => localStorage.length), 0);
    assert.equal(await page.getByText("No security groups in this project and region yet.").count(), 1);
  });

  await t.test("create a group with tags and the default rules", async () => {
    await page.getByRole("button", { name: "Create security group" }).click();
    const dialog = page.getByRole("dialog", { name: "Create security group" });
    await dialog.getByLabel("Name", { exact: true }).fill("web-frontend");
    await dialog.getByLabel("Description", { exact: true }).fill("Public web servers");
    await dialog.getByLabel("Tags", { exact: true }).fill("env=prod\nteam=web");
    await shoot(page, "create-group", "Create security group");
    await dialog.getByRole("button", { name: "Create", exact: true }).click();
    await ready(page, "group");
    await page.getByRole("heading", { name: "web-frontend", level: 1 }).waitFor();
    assert.equal(await rows(page, "egress").count(), 2);
    assert.equal(await rows(page, "ingress").count(), 0);
    await page.getByText("env=prod").waitFor();
  });

  let group;
  await t.test("add rules; an overly broad one is flagged next to it", async () => {
    group = await groupByName("web-frontend");
    for (const [min, description] of [["22", "SSH"], ["443", "HTTPS"]]) {
      await page.getByRole("button", { name: "Add rule" }).click();
      const dialog = page.getByRole("dialog", { name: "Add rule" });
      await dialog.getByLabel("Direction", { exact: true }).selectOption("ingress");
      await dialog.getByLabel("Ether type", { exact: true }).selectOption("IPv4");
      await dialog.getByLabel("Protocol", { exact: true }).selectOption("tcp");
      await dialog.getByLabel("Port range min", { exact: true }).fill(min);
      await dialog.getByLabel("Port range max", { exact: true }).fill(min);
      await dialog.getByLabel("Remote IP prefix", { exact: true }).fill("0.0.0.0/0");
      await dialog.getByLabel("Remote group", { exact: true }).fill("");
      await dialog.getByLabel("Description", { exact: true }).fill(description);
      if (min === "443") await shoot(page, "rule-form", "Add rule");
      await dialog.getByRole("button", { name: "Save rule" }).click();
      await dialog.waitFor({ state: "detached" });
      await page.locator(`section[data-direction="ingress"] tbody tr`, { hasText: description }).waitFor();
    }
    assert.equal(await rows(page, "ingress").count(), 2);
    const ssh = rows(page, "ingress").filter({ hasText: "SSH" });
    await ssh.getByText("Overly broad").waitFor();
    await ssh.getByText("allows SSH (22) from anywhere").waitFor();
  });

  await t.test("port range min 0 / max 70000: the errors sit next to those fields and nothing is stored", async () => {
    const before = (await expectStatus(call(keys.tenant, "GET", `/cloud/v1/securitygroups/1/1/${group.id}`), 200)).security_group_rules.length;
    await page.getByRole("button", { name: "Add rule" }).click();
    const dialog = page.getByRole("dialog", { name: "Add rule" });
    await dialog.getByLabel("Protocol", { exact: true }).selectOption("tcp");
    await dialog.getByLabel("Port range min", { exact: true }).fill("0");
    await dialog.getByLabel("Port range max", { exact: true }).fill("70000");
    await dialog.getByRole("button", { name: "Save rule" }).click();
    const minError = dialog.locator('[data-field="port_range_min"] .field-error');
    const maxError = dialog.locator('[data-field="port_range_max"] .field-error');
    await minError.waitFor({ state: "visible" });
    await maxError.waitFor({ state: "visible" });
    assert.notEqual((await minError.textContent()).trim(), "");
    assert.notEqual((await maxError.textContent()).trim(), "");
    assert.equal(await dialog.getByLabel("Port range min", { exact: true }).getAttribute("aria-invalid"), "true");
    assert.equal(await dialog.getByLabel("Port range max", { exact: true }).getAttribute("aria-invalid"), "true");
    // Each message is the input's description, so a screen reader reads it with the field.
    const described = await dialog.getByLabel("Port range min", { exact: true }).evaluate((el) => el.getAttribute("aria-describedby").split(" ").map((id) => document.getElementById(id).textContent).join(" "));
    assert.ok(described.includes((await minError.textContent()).trim()));
    await shoot(page, "rule-form-errors", "Field errors from the API");
    const after = (await expectStatus(call(keys.tenant, "GET", `/cloud/v1/securitygroups/1/1/${group.id}`), 200)).security_group_rules.length;
    assert.equal(after, before, "nothing was stored");
    await page.keyboard.press("Escape");
    await dialog.waitFor({ state: "detached" });
  });

  await t.test("edit a rule, then delete one", async () => {
    const ssh = rows(page, "ingress").filter({ hasText: "SSH" });
    const oldId = await ssh.getAttribute("data-rule-id");
    await ssh.getByRole("button", { name: /^Edit/ }).click();
    const dialog = page.getByRole("dialog", { name: "Edit rule" });
    assert.equal(await dialog.getByLabel("Port range min", { exact: true }).inputValue(), "22");
    await dialog.getByLabel("Remote IP prefix", { exact: true }).fill("10.0.0.0/8");
    await dialog.getByLabel("Description", { exact: true }).fill("SSH from the office");
    await dialog.getByRole("button", { name: "Save rule" }).click();
    await dialog.waitFor({ state: "detached" });
    const edited = rows(page, "ingress").filter({ hasText: "SSH from the office" });
    await edited.waitFor();
    assert.match(await edited.textContent(), /10\.0\.0\.0\/8/);
    assert.equal(await edited.getByText("Overly broad").count(), 0, "the finding went away with the edit");
    const stored = (await expectStatus(call(keys.tenant, "GET", `/cloud/v1/securitygroups/1/1/${group.id}`), 200)).security_group_rules;
    assert.ok(!stored.some((r) => r.id === oldId), "the edit replaced the rule");
    assert.ok(stored.some((r) => r.remote_ip_prefix === "10.0.0.0/8" && r.port_range_min === 22));

    const https = rows(page, "ingress").filter({ hasText: "HTTPS" });
    const httpsId = await https.getAttribute("data-rule-id");
    await https.getByRole("button", { name: /^Delete/ }).click();
    const confirm = page.getByRole("dialog", { name: "Delete rule" });
    await confirm.getByRole("button", { name: "Delete rule" }).click();
    await confirm.waitFor({ state: "detached" });
    await page.locator(`tr[data-rule-id="${httpsId}"]`).waitFor({ state: "detached" });
    assert.equal(await rows(page, "ingress").count(), 1);
    const left = (await expectStatus(call(keys.tenant, "GET", `/cloud/v1/securitygroups/1/1/${group.id}`), 200)).security_group_rules;
    assert.ok(!left.some((r) => r.id === httpsId));
  });

  await t.test("tags, Copy, Revert to default and Delete of an unused group", async () => {
    await page.getByRole("button", { name: "Edit tags" }).click();
    const tags = page.getByRole("dialog", { name: "Edit tags" });
    await tags.getByLabel("Tags", { exact: true }).fill("env=prod\nteam=web\ntier=frontend");
    await tags.getByRole("button", { name: "Save tags" }).click();
    await tags.waitFor({ state: "detached" });
    await page.locator(".tags-section").getByText("tier=frontend").waitFor();
    await shoot(page, "group", "A security group");

    await page.getByRole("button", { name: "Copy", exact: true }).click();
    const copy = page.getByRole("dialog", { name: "Copy web-frontend" });
    await copy.getByLabel("Name", { exact: true }).fill("web-frontend-copy");
    await copy.getByRole("button", { name: "Copy", exact: true }).click();
    await page.getByRole("heading", { name: "web-frontend-copy", level: 1 }).waitFor();
    await ready(page, "group");
    assert.equal(await rows(page, "ingress").count(), 1);

    await page.getByRole("button", { name: "Revert to default" }).click();
    const revert = page.getByRole("dialog", { name: "Revert to default" });
    await revert.getByRole("button", { name: "Revert to default" }).click();
    await revert.waitFor({ state: "detached" });
    await page.getByText("No ingress rules").waitFor();
    assert.equal(await rows(page, "egress").count(), 2);

    await deleteOpenGroup(page, "web-frontend-copy");
  });

  // The platform registers the instance's port (and one of another client).
  let port;
  await t.test("ports and effective rules", async () => {
    port = await expectStatus(
      call(keys.platform, "POST", "/palisade/v1/ports", {
        client_id: 1, project_id: 1, region_id: 1, instance_id: "7b0c2f1e-9a43-4a8e-8f59-1f0a4b6c2d11", instance_name: "web-1",
        host: "compute-1", device: "tap-web1", mac_address: "fa:16:3e:00:00:01", fixed_ips: ["10.0.0.5"], security_group_ids: [group.id],
      }),
      201,
    );
    await expectStatus(
      call(keys.platform, "POST", "/palisade/v1/ports", {
        client_id: 2, project_id: 1, region_id: 1, instance_id: "1d6e8f0a-2b3c-4d5e-8f70-8192a3b4c5d6", instance_name: "db-7",
        host: "compute-2", device: "tap-db7", mac_address: "fa:16:3e:00:00:07", fixed_ips: ["10.0.9.7"],
      }),
      201,
    );

    await page.getByRole("link", { name: "Ports", exact: true }).click();
    await ready(page, "ports");
    const row = page.locator("tbody tr", { hasText: "web-1" });
    await row.getByRole("link", { name: "web-frontend" }).waitFor();
    assert.equal(await page.locator("tbody tr", { hasText: "db-7" }).count(), 0, "another client's port is not shown");
    await shoot(page, "ports", "Ports");
    await row.getByRole("link", { name: port.id.slice(0, 8) }).click();
    await ready(page, "port");
    await page.getByRole("heading", { name: "Effective rules" }).waitFor();
    await page.locator("tbody tr", { hasText: "10.0.0.0/8" }).waitFor();
    await shoot(page, "port", "A port and its effective rules");
  });

  await t.test("check a flow: the deciding rule is highlighted, or the default policy drops it", async () => {
    await page.getByRole("link", { name: "Check a flow", exact: true }).first().click();
    await ready(page, "check");
    await page.getByRole("heading", { name: "Check a flow", level: 1 }).waitFor();
    await page.getByLabel("Port", { exact: true }).selectOption(port.id);
    await page.getByLabel("Direction", { exact: true }).selectOption("ingress");
    await page.getByLabel("Remote IP", { exact: true }).fill("10.1.2.3");
    await page.getByLabel("Protocol", { exact: true }).selectOption("tcp");
    await page.getByLabel("Destination port", { exact: true }).fill("22");
    await page.getByRole("button", { name: "Check", exact: true }).click();
    await page.locator(".verdict-word", { hasText: "ALLOW" }).waitFor();
    const decider = page.locator("tr.decider");
    assert.equal(await decider.count(), 1);
    assert.match(await decider.textContent(), /10\.0\.0\.0\/8/);
    assert.match(await decider.textContent(), /Deciding rule/);
    assert.match(await page.locator(".decided").textContent(), /Ingress rule 1 of group web-frontend/);
    await shoot(page, "check-allow", "Check a flow: allowed, with the deciding rule");

    await page.getByLabel("Remote IP", { exact: true }).fill("203.0.113.7");
    await page.getByRole("button", { name: "Check", exact: true }).click();
    await page.locator(".verdict-word", { hasText: "DENY" }).waitFor();
    await page.getByText("dropped by the default policy").first().waitFor();
    assert.equal(await page.locator("tr.decider").count(), 0);
    await shoot(page, "check-deny", "Check a flow: dropped by the default policy");

    await page.getByLabel("Remote IP", { exact: true }).fill("not-an-address");
    await page.getByRole("button", { name: "Check", exact: true }).click();
    await page.locator('[data-field="remote_ip"] .field-error').waitFor({ state: "visible" });
  });

  await t.test("tasks update live, quotas show as bars", async () => {
    await page.getByRole("link", { name: "Tasks", exact: true }).click();
    await ready(page, "tasks");
    await page.locator("tbody tr", { hasText: "create security group" }).first().waitFor();
    const before = await page.locator("tbody tr:not(.empty)").count();
    // A task started elsewhere (an SDK, another tab) appears without a reload.
    await expectStatus(call(keys.tenant, "POST", "/cloud/v2/security_groups/1/1", { name: "db-backend", rules: [{ direction: "ingress", protocol: "tcp", port_range_min: 5432, port_range_max: 5432, remote_ip_prefix: "10.0.0.0/16" }, { direction: "ingress", protocol: "tcp", port_range_min: 5432, port_range_max: 5432, remote_ip_prefix: "10.0.1.0/24" }] }), 200);
    await page.waitForFunction((n) => document.querySelectorAll("main tbody tr:not(.empty)").length > n, before, { timeout: 8000 });
    await shoot(page, "tasks", "Tasks");

    await page.getByRole("link", { name: "Quotas", exact: true }).click();
    await ready(page, "quotas");
    assert.equal(await page.getByRole("meter").count(), 2);
    await page.getByText("2 of 10,000").waitFor();
    await shoot(page, "quotas", "Quotas");
  });

  await t.test("delete a group in use: its ports and instances are listed; once unbound it goes", async () => {
    await page.getByRole("link", { name: "Security groups", exact: true }).click();
    await ready(page, "groups");
    await shoot(page, "groups", "Security groups");
    await page.getByRole("link", { name: "web-frontend", exact: true }).click();
    await ready(page, "group");
    await page.getByRole("button", { name: "Delete", exact: true }).click();
    const del = page.getByRole("dialog", { name: "Delete web-frontend" });
    await del.getByRole("button", { name: "Delete security group" }).click();
    await del.locator(".in-use").getByText("web-1").waitFor();
    await del.locator(".in-use").getByRole("link", { name: port.id.slice(0, 8) }).waitFor();
    await shoot(page, "delete-in-use", "Delete refused: the group is in use");
    await del.getByRole("button", { name: "Cancel" }).click();
    assert.ok(await groupByName("web-frontend"), "nothing was deleted");

    await expectStatus(call(keys.platform, "DELETE", `/palisade/v1/ports/${port.id}`), 204);
    await deleteOpenGroup(page, "web-frontend");
  });

  await t.test("a tenant key on a platform page gets a clear 403, then signs out", async () => {
    await page.goto(`${base}/console#/agents`);
    await ready(page, "agents");
    await page.getByText("Not available for this key.").waitFor();
    await axe(page, "403 page");
    await page.getByRole("button", { name: "Sign out" }).click();
    await ready(page, "signin");
    await page.getByText("Signed out. The key was forgotten.").waitFor();
    assert.equal(await page.evaluate(() => sessionStorage.length + localStorage.length), 0);
    assert.equal(await page.evaluate((secret) => document.documentElement.outerHTML.includes(secret), keys.tenant.split("$")[1]), false, "no token left in the page");
  });

  await t.test("the platform sees agents, every client's ports and any client's quotas", async () => {
    // compute-1's agent applied its host's current policy, compute-2's is one revision behind
    // (each host has its own revision: the agents report once to be listed with it).
    for (const [key, host] of [[keys.agent1, "compute-1"], [keys.agent2, "compute-2"]]) {
      await expectStatus(call(key, "PUT", `/palisade/v1/agents/${host}/status`, { applied_revision: 0 }), 200);
    }
    const agents = await expectStatus(call(keys.platform, "GET", "/palisade/v1/agents"), 200);
    const revisionOf = (host) => agents.results.find((a) => a.host === host).policy_revision;
    assert.ok(revisionOf("compute-2") >= 1, "compute-2 holds a port, so its policy has a revision");
    await expectStatus(call(keys.agent1, "PUT", "/palisade/v1/agents/compute-1/status", { applied_revision: revisionOf("compute-1") }), 200);
    await expectStatus(call(keys.agent2, "PUT", "/palisade/v1/agents/compute-2/status", { applied_revision: revisionOf("compute-2") - 1 }), 200);
    await signIn(page, keys.platform);
    await ready(page, "agents");
    await page.getByText("1 of 2 agents in sync").waitFor();
    assert.match(await page.locator("tbody tr", { hasText: "compute-2" }).textContent(), /Behind/);
    assert.match(await page.locator("tbody tr", { hasText: "compute-1" }).textContent(), /In sync/);
    await shoot(page, "agents", "Platform: agents");
    await page.getByRole("link", { name: "Ports", exact: true }).click();
    await ready(page, "ports");
    await page.locator("tbody tr", { hasText: "db-7" }).waitFor();
    await shoot(page, "platform-ports", "Platform: ports of every client");
    await page.goto(`${base}/console#/quotas?client=1`);
    await ready(page, "quotas");
    assert.equal(await page.getByRole("meter").count(), 2);
    await page.goto(`${base}/console#/groups`);
    await ready(page, "groups");
    await page.getByText("Not available for this key.").waitFor();
    await page.getByRole("button", { name: "Sign out" }).click();
    await ready(page, "signin");
  });

  await t.test("keyboard only, and usable 390 px wide", async () => {
    // Keyboard: sign in, open a group, add a rule, without the mouse.
    await page.getByLabel("API key", { exact: true }).focus();
    await page.keyboard.type(keys.tenant);
    await page.keyboard.press("Enter");
    await ready(page, "groups");
    await tabTo(page, "db-backend");
    await page.keyboard.press("Enter");
    await ready(page, "group");
    await tabTo(page, "Add rule");
    await page.keyboard.press("Enter");
    const dialog = page.getByRole("dialog", { name: "Add rule" });
    await dialog.waitFor();
    assert.equal(await page.evaluate(() => document.activeElement.name), "direction", "focus starts in the form");
    await tabTo(page, "Port range min");
    await page.keyboard.type("6432");
    await page.keyboard.press("Enter");
    await dialog.waitFor({ state: "detached" });
    await rows(page, "ingress").filter({ hasText: "6432" }).waitFor();
    await rows(page, "ingress").getByText("Shadowed").first().waitFor();

    const narrow = await newPage({ width: 390, height: 844 });
    await signIn(narrow, keys.tenant);
    await ready(narrow, "groups");
    const overflow = () => narrow.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok((await overflow()) <= 0, "the groups page scrolls sideways");
    await shoot(narrow, "mobile-groups", "Security groups at 390 px");
    await narrow.getByRole("link", { name: "db-backend", exact: true }).click();
    await ready(narrow, "group");
    assert.ok((await overflow()) <= 0, "the group page scrolls sideways");
    await shoot(narrow, "mobile-group", "A group at 390 px (tables scroll inside their frame)");
    await narrow.context().close();
  });

  assert.deepEqual(await page.evaluate(() => window.__csp), []);
  await page.context().close();
});

test(`the groups page loads its first page quickly with ${BULK.toLocaleString("en-US")} groups`, async () => {
  // Project 2 gets BULK groups (the quota lifted by the platform), made through the API.
  await expectStatus(call(keys.platform, "PUT", "/palisade/v1/quotas/2/1?client_id=1", { security_group_count: -1, security_group_rule_count: -1 }), 200);
  const started = Date.now();
  let next = 0;
  const worker = async () => {
    while (next < BULK) {
      const i = next++;
      const body = { security_group: { name: `bulk-${String(i).padStart(5, "0")}`, description: `group ${i}`, ...(i % 10 === 0 ? { tags: { env: "prod" } } : {}) } };
      let answer = await call(keys.tenant, "POST", "/cloud/v1/securitygroups/2/1", body);
      while (answer.status === 429) {
        await new Promise((r) => setTimeout(r, 200));
        answer = await call(keys.tenant, "POST", "/cloud/v1/securitygroups/2/1", body);
      }
      assert.ok(answer.status === 200 || answer.status === 201, JSON.stringify(answer.body));
    }
  };
  await Promise.all(Array.from({ length: 8 }, worker));
  const seeded = Date.now() - started;

  const page = await newPage();
  await signIn(page, keys.tenant);
  await ready(page, "groups");
  await page.getByLabel("Project", { exact: true }).fill("2");
  await page.getByLabel("Project", { exact: true }).press("Enter");
  await page.getByText(`of ${BULK.toLocaleString("en-US")} security groups`).waitFor();

  // In the app: from another page to the first page of groups, table drawn.
  const inApp = [];
  for (let i = 0; i < 7; i++) {
    await page.evaluate(() => {
      location.hash = "#/quotas";
    });
    await ready(page, "quotas");
    inApp.push(
      await page.evaluate(async () => {
        const t0 = performance.now();
        location.hash = "#/groups";
        await new Promise((resolve) => {
          const tick = () => (document.querySelector('main[data-page="groups"][data-state="ready"] tbody tr a') ? resolve() : requestAnimationFrame(tick));
          tick();
        });
        return performance.now() - t0;
      }),
    );
  }
  // A reload: the page, its scripts, the role check and the first page of groups.
  const reload = [];
  for (let i = 0; i < 3; i++) {
    const t0 = Date.now();
    await page.reload();
    await page.waitForSelector('main[data-page="groups"][data-state="ready"] tbody tr a');
    reload.push(Date.now() - t0);
  }
  const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  const figures = { groups: BULK, seed_ms: seeded, in_app_median_ms: Math.round(median(inApp)), in_app_max_ms: Math.round(Math.max(...inApp)), reload_median_ms: median(reload) };
  console.log(`# console timing ${JSON.stringify(figures)}`);
  assert.equal(await page.locator("main tbody tr").count(), 25);
  assert.ok(figures.in_app_median_ms < FIRST_PAGE_BOUND_MS, `first page in ${figures.in_app_median_ms} ms`);
  assert.ok(figures.reload_median_ms < FIRST_PAGE_BOUND_MS * 2, `reload in ${figures.reload_median_ms} ms`);

  // Paging and the tag filter run on the server too.
  await page.getByRole("button", { name: "Next" }).click();
  await page.getByText(`Showing 26–50 of ${BULK.toLocaleString("en-US")}`).waitFor();
  await page.getByLabel("Tag", { exact: true }).fill("env=prod");
  await page.getByRole("button", { name: "Filter", exact: true }).click();
  await page.getByText(`of ${(BULK / 10).toLocaleString("en-US")} security groups`).waitFor();
  await shoot(page, "groups-10000", `Security groups: ${BULK.toLocaleString("en-US")} in one project, filtered by tag`);
  await page.context().close();

  fs.mkdirSync(path.join(REPO, "target"), { recursive: true });
  fs.writeFileSync(path.join(REPO, "target/console-timing.json"), JSON.stringify(figures, null, 2));
  if (DOCS) updateBenchmarks(figures);
  assert.deepEqual(problems, []);
});

test("no key reaches the server's log", () => {
  const log = fs.readFileSync(path.join(dataDir, "serve.log"), "utf8");
  for (const key of Object.values(keys)) assert.ok(!log.includes(key.split("$")[1]), "a key secret is in the server log");
  assert.deepEqual(problems, [], "page errors, CSP violations or foreign requests");
});

function updateBenchmarks(f) {
  const file = path.join(REPO, "docs/benchmarks.md");
  const text = fs.readFileSync(file, "utf8");
  const start = "<!-- console-timing:start -->";
  const end = "<!-- console-timing:end -->";
  const block = `${start}
| groups in the project | first page, in the app (median of 7 / max) | first page after a reload (median of 3) | seeding through the API (8 connections) |
|---:|---:|---:|---:|
| ${f.groups.toLocaleString("en-US")} | ${f.in_app_median_ms} ms / ${f.in_app_max_ms} ms | ${f.reload_median_ms} ms | ${(f.seed_ms / 1000).toFixed(1)} s |

Measured ${new Date().toISOString().slice(0, 10)} by \`PALISADE_CONSOLE_DOCS=1 scripts/test-console.sh\` (debug build of the server, headless Chromium ${browser.version()}).
${end}`;
  const i = text.indexOf(start);
  const j = text.indexOf(end);
  if (i >= 0 && j > i) fs.writeFileSync(file, text.slice(0, i) + block + text.slice(j + end.length));
}
