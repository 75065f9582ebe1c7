// The Switchyard console: pools, endpoints, plugins and alerts, kept live
// from the control API's event stream. It uses the API as any client does:
// with a bearer token when the API asks for one (kept for this tab only).
"use strict";

const TOKEN_KEY = "switchyard-token";
const REFRESH_AFTER_EVENT_MS = 100;
const POLL_EVERY_MS = 2000;

let token = sessionStorage.getItem(TOKEN_KEY);
let refreshTimer = null;
/** What an operator has typed and not yet sent, by field: kept across redraws. */
const drafts = new Map();
let streaming = false;
/** What the caller may do: actions are shown to operators and admins. */
let role = null;

function headers() {
  return token ? { authorization: `Bearer ${token}` } : {};
}

/** GETs an API path as JSON; null after asking for a token on 401. */
async function api(path) {
  const response = await fetch(path, { headers: headers() });
  if (response.status === 401 || response.status === 403) {
    askForToken(response.status === 403 ? "that token may not read" : "");
    return null;
  }
  if (!response.ok) {
    throw new Error(`${path}: ${response.status}`);
  }
  return response.json();
}

function endpointPath(pool, address) {
  return `/v1/pools/${encodeURIComponent(pool)}/endpoints/${encodeURIComponent(address)}`;
}

/** Changes an endpoint through the API; shows the API's error if refused. */
async function changeEndpoint(pool, address, change, question) {
  const done = `${address}: ${Object.entries(change).map(([k, v]) => `${k} ${v}`).join(", ")}`;
  return act("PATCH", endpointPath(pool, address), change, question, done);
}

/** Sends one change to the API (a JSON body, or a file as it is), after
 * `question` if any; says what came of it, and whether it was done. */
async function act(method, path, body, question, done) {
  if (question && !window.confirm(question)) return false;
  const file = body instanceof Blob;
  const response = await fetch(path, {
    method,
    headers: {
      ...headers(),
      "content-type": file ? "application/octet-stream" : "application/json",
    },
    body: body === undefined || file ? body : JSON.stringify(body),
  });
  const notice = document.getElementById("notice");
  if (response.ok) {
    notice.textContent = typeof done === "function" ? done(await response.json()) : done;
    notice.className = "";
  } else {
    let message = `${response.status}`;
    try {
      const body = await response.json();
      message = body.error ? body.error.message : message;
    } catch (error) {
      // The status alone, then.
    }
    notice.textContent = `Refused: ${message}`;
    notice.className = "refused";
  }
  refreshSoon();
  return response.ok;
}

/** The actions an operator has on an endpoint. */
function endpointActions(pool, endpoint) {
  const box = document.createElement("span");
  box.className = "actions";
  const button = (label, onClick) => {
    const element = cell("button", label);
    element.type = "button";
    element.setAttribute("aria-label", `${label} ${endpoint.address}`);
    element.addEventListener("click", onClick);
    box.appendChild(element);
  };
  if (endpoint.state === "active") {
    button("Drain", () =>
      changeEndpoint(pool, endpoint.address, { state: "draining" },
        `Drain ${endpoint.address}? It takes no new requests.`));
    button("Disable", () =>
      changeEndpoint(pool, endpoint.address, { state: "disabled" },
        `Disable ${endpoint.address}? It takes no requests at all.`));
  } else {
    button("Activate", () => changeEndpoint(pool, endpoint.address, { state: "active" }));
  }
  const draftKey = `${pool} ${endpoint.address}`;
  const weight = document.createElement("input");
  weight.type = "number";
  weight.min = "1";
  weight.value = drafts.get(draftKey) ?? String(endpoint.weight);
  weight.setAttribute("aria-label", `weight of ${endpoint.address}`);
  weight.className = "weight";
  weight.addEventListener("input", () => drafts.set(draftKey, weight.value));
  box.appendChild(weight);
  button("Set weight", async () => {
    if (await changeEndpoint(pool, endpoint.address, { weight: Number(weight.value) })) {
      drafts.delete(draftKey);
    }
  });
  button("Remove", () =>
    act("DELETE", endpointPath(pool, endpoint.address), undefined,
      `Remove ${endpoint.address} from ${pool}? It takes no new requests; those in flight finish.`,
      `${endpoint.address}: removed from ${pool}`));
  return box;
}

/** The form that adds an endpoint to a pool. What is typed in it outlives
 * the redraws of the page. */
function addEndpointForm(pool) {
  const form = document.createElement("form");
  form.className = "add-endpoint";
  const field = (name, label, type, attributes) => {
    const input = document.createElement("input");
    input.type = type;
    input.name = name;
    Object.assign(input, attributes);
    input.setAttribute("aria-label", `${label} of a new endpoint in ${pool}`);
    const key = `${pool} new ${name}`;
    input.value = drafts.get(key) ?? input.value;
    input.addEventListener("input", () => drafts.set(key, input.value));
    form.appendChild(input);
    return input;
  };
  const address = field("address", "address", "text", { placeholder: "host:port", required: true });
  const weight = field("weight", "weight", "number", { value: "1", min: "1", className: "weight" });
  const submit = cell("button", "Add endpoint");
  submit.type = "submit";
  submit.setAttribute("aria-label", `Add endpoint to ${pool}`);
  form.appendChild(submit);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const path = `/v1/pools/${encodeURIComponent(pool)}/endpoints`;
    const body = { address: address.value.trim(), weight: Number(weight.value) };
    if (await act("POST", path, body, null, `${body.address}: added to ${pool}`)) {
      drafts.delete(`${pool} new address`);
      drafts.delete(`${pool} new weight`);
    }
  });
  return form;
}

function askForToken(why) {
  const form = document.getElementById("login");
  form.hidden = false;
  document.getElementById("login-error").textContent = why;
  setStatus("sign in to see this Switchyard");
}

function setStatus(text) {
  document.getElementById("status").textContent = text;
}

/** An element with text and, optionally, a class. */
function cell(tag, text, className) {
  const element = document.createElement(tag);
  element.textContent = text;
  if (className) element.className = className;
  return element;
}

function state(word) {
  return cell("span", word, `state state-${word.replace(/\s+/g, "-")}`);
}

function table(headings, rows) {
  const wrapper = document.createElement("div");
  wrapper.className = "scroll";
  const element = document.createElement("table");
  const head = element.createTHead().insertRow();
  for (const [heading, numeric] of headings) {
    const th = cell("th", heading, numeric ? "num" : "");
    th.scope = "col";
    head.appendChild(th);
  }
  const body = element.createTBody();
  for (const row of rows) {
    const tr = body.insertRow();
    if (row.id) tr.id = row.id;
    row.cells.forEach((value, index) => {
      const td = document.createElement("td");
      if (headings[index][1]) td.className = "num";
      if (value instanceof Node) td.appendChild(value);
      else td.textContent = value;
      tr.appendChild(td);
    });
  }
  wrapper.appendChild(element);
  return wrapper;
}

/** The word an endpoint's health comes to, as an operator reads it. */
function endpointHealth(endpoint) {
  const health = endpoint.health;
  if (health.ejected_for_ms) return `ejected`;
  if (health.held_after_connect_failure) return "held out";
  return health.active;
}

/** Whether the endpoint is in the config file, where the API changes it;
 * one found by DNS or registered follows its source instead. */
function listed(endpoint) {
  return (endpoint.source ?? "config") === "config";
}

function renderPools(pools) {
  const container = document.getElementById("pools");
  container.replaceChildren();
  for (const pool of pools) {
    container.appendChild(cell("h3", pool.name));
    const meta = [`balancer ${pool.balancer}`, `serving tier ${pool.serving_tier}`];
    if (pool.panic) meta.push("PANIC: serving every endpoint");
    if (pool.fallback_picks) meta.push(`${pool.fallback_picks} fallback picks`);
    container.appendChild(cell("p", meta.join(" · "), "pool-meta"));
    const rows = pool.endpoints.map((endpoint) => ({
      id: `endpoint-${pool.name}-${endpoint.address}`,
      cells: [
        listed(endpoint) ? endpoint.address : `${endpoint.address} (${endpoint.source})`,
        state(endpointHealth(endpoint)),
        endpoint.health.ejected_for_ms
          ? `${Math.ceil(endpoint.health.ejected_for_ms / 1000)} s`
          : "",
        state(endpoint.state),
        `${endpoint.effective_weight}/${endpoint.weight}`,
        String(endpoint.load.in_flight),
        `${(endpoint.load.success_permille / 10).toFixed(1)}%`,
        `${(endpoint.load.ewma_latency_us / 1000).toFixed(1)} ms`,
        endpoint.health.reason,
        ...(mayAct()
          ? [listed(endpoint)
            ? endpointActions(pool.name, endpoint)
            : cell("span", `follows ${endpoint.source}`)]
          : []),
      ],
    }));
    container.appendChild(
      table(
        [
          ["endpoint"], ["health"], ["ejected for", true], ["state"], ["weight", true],
          ["in flight", true], ["success", true], ["latency", true], ["why"],
          ...(mayAct() ? [["actions"]] : []),
        ],
        rows,
      ),
    );
    if (mayAct()) container.appendChild(addEndpointForm(pool.name));
  }
}

/** The actions an operator has on a plugin, and on its running rollout. */
function pluginActions(plugin) {
  const box = document.createElement("span");
  box.className = "actions";
  const path = `/v1/plugins/${encodeURIComponent(plugin.name)}`;
  const button = (label, method, suffix, question, done) => {
    const element = cell("button", label);
    element.type = "button";
    element.setAttribute("aria-label", `${label} ${plugin.name}`);
    element.addEventListener("click", () => act(method, `${path}${suffix}`, undefined, question, done));
    box.appendChild(element);
  };
  button("Reload", "POST", "/reload", null, `${plugin.name}: its file loaded again`);
  if (plugin.state === "quarantined") {
    button("Unquarantine", "POST", "/unquarantine", null, `${plugin.name}: quarantine lifted`);
  }
  const rollout = plugin.rollout && plugin.rollout.state;
  if (rollout === "shadow" || rollout === "canary" || rollout === "held") {
    button("Promote", "POST", "/rollout/promote",
      `Promote ${plugin.name}'s candidate? It takes every pick at once.`,
      `${plugin.name}: candidate promoted`);
    button("Abort", "POST", "/rollout/abort", null, `${plugin.name}: rollout aborted`);
  }
  return box;
}

function renderPlugins(plugins) {
  if (plugins.length === 0) {
    document.getElementById("plugins").replaceChildren(
      cell("p", "No plugin is loaded: every pool balances natively.", "pool-meta"));
    return;
  }
  const rows = plugins.map((plugin) => ({
    id: `plugin-${plugin.name}`,
    cells: [
      plugin.name,
      state(plugin.state),
      plugin.world ?? "",
      plugin.hash ? plugin.hash.slice(0, 12) : "",
      String(plugin.calls),
      String(plugin.faults),
      plugin.call_micros ? `${plugin.call_micros.p50.toFixed(1)} / ${plugin.call_micros.p99.toFixed(1)} µs` : "",
      plugin.rollout ? state(`${plugin.rollout.state}`) : "",
      plugin.last_error ? plugin.last_error.message : "",
      ...(mayAct() ? [pluginActions(plugin)] : []),
    ],
  }));
  document.getElementById("plugins").replaceChildren(
    table(
      [
        ["plugin"], ["state"], ["world"], ["version"], ["calls", true], ["faults", true],
        ["p50 / p99", true], ["rollout"], ["last error"],
        ...(mayAct() ? [["actions"]] : []),
      ],
      rows,
    ),
  );
}

/** The fleet this instance is in: every instance, and who lags. */
function renderFleet(cluster) {
  document.getElementById("fleet-section").hidden = !cluster.enabled;
  document.getElementById("fleet-link").hidden = !cluster.enabled;
  if (!cluster.enabled) return;
  const etcd = cluster.etcd_reachable
    ? "etcd answers"
    : `etcd unreachable since ${new Date(cluster.etcd_unreachable_since_unix_ms).toLocaleTimeString()}` +
      (cluster.last_error ? `: ${cluster.last_error}` : "");
  document.getElementById("fleet-meta").textContent =
    `${cluster.name} serves revision ${cluster.applied_revision} of ${cluster.config_key} (newest ${cluster.latest_revision}) · ${etcd}`;
  const rows = cluster.members.map((member) => ({
    id: `member-${member.name}`,
    cells: [
      member.name + (member.name === cluster.name ? " (this one)" : ""),
      state(member.lagging ? "lagging" : "current"),
      String(member.applied_revision),
      `${(member.heartbeat_age_ms / 1000).toFixed(1)} s ago`,
      member.proxy,
      member.control,
      member.version,
      member.refused ?? "",
    ],
  }));
  document.getElementById("fleet").replaceChildren(
    table(
      [["instance"], ["config"], ["revision", true], ["heartbeat", true], ["proxy"], ["control"], ["version"], ["not applied"]],
      rows,
    ),
  );
}

function renderAlerts(alerts) {
  const list = document.getElementById("alerts");
  list.replaceChildren();
  for (const alert of alerts.slice().reverse().slice(0, 50)) {
    const item = document.createElement("li");
    item.appendChild(cell("span", alert.severity, "sev"));
    const when = new Date(alert.at_unix_ms).toLocaleTimeString();
    item.appendChild(document.createTextNode(`${when} ${alert.pool}: ${alert.message}`));
    list.appendChild(item);
  }
}

function mayAct() {
  return role === "operator" || role === "admin";
}

/** What has the keyboard's focus, by a name that outlives a redraw, with
 * the caret of a field being typed in. */
function focusKey() {
  const element = document.activeElement;
  if (!element || element === document.body) return null;
  const label = element.getAttribute("aria-label");
  if (!label) return null;
  return { label, start: element.selectionStart, end: element.selectionEnd };
}

/** Gives the focus back to the control `key` names, redrawn. Fields keep
 * what was typed in them (`drafts`), so a redraw never loses typing. */
function restoreFocus(key) {
  if (!key || (document.activeElement && document.activeElement !== document.body)) return;
  const element = document.querySelector(`[aria-label="${CSS.escape(key.label)}"]`);
  if (!element) return;
  element.focus();
  if (key.start != null && element.setSelectionRange) {
    try {
      element.setSelectionRange(key.start, key.end);
    } catch (error) {
      // A number field has no caret to place.
    }
  }
}

async function refresh() {
  try {
    const session = await api("/v1/session");
    if (!session) return;
    role = session.role;
    const [pools, plugins, alerts, cluster] = await Promise.all([
      api("/v1/pools?limit=1000"),
      api("/v1/plugins"),
      api("/v1/alerts"),
      api("/v1/cluster"),
    ]);
    if (!pools || !plugins || !alerts) return;
    const rollouts = await Promise.all(
      plugins.plugins
        .filter((plugin) => plugin.rollout)
        .map((plugin) => api(`/v1/plugins/${encodeURIComponent(plugin.name)}/rollout`).catch(() => null)),
    );
    const focused = focusKey();
    document.getElementById("login").hidden = true;
    renderPools(pools.pools);
    poolNames = pools.pools.map((pool) => pool.name);
    renderPlugins(plugins.plugins);
    renderRolloutStart(plugins.plugins);
    renderRollouts(rollouts.filter(Boolean));
    renderAlerts(alerts.alerts ?? alerts);
    if (cluster) renderFleet(cluster);
    restoreFocus(focused);
    const who = session.token ? ` · ${session.token} (${session.role})` : "";
    setStatus(`${streaming ? "live" : "polling"} · updated ${new Date().toLocaleTimeString()}${who}`);
  } catch (error) {
    setStatus(`cannot reach the control API: ${error.message}`);
  }
}

/** The form that puts a candidate on trial: for operators, with the
 * plugins that serve. It is not redrawn, so a chosen file stays chosen. */
function renderRolloutStart(plugins) {
  const form = document.getElementById("rollout-start");
  const select = document.getElementById("rollout-plugin");
  const names = plugins.filter((plugin) => plugin.hash).map((plugin) => plugin.name);
  form.hidden = !mayAct() || names.length === 0;
  const shown = [...select.options].map((option) => option.value);
  if (names.join("\n") === shown.join("\n")) return;
  const chosen = select.value;
  select.replaceChildren(...names.map((name) => new Option(name, name, false, name === chosen)));
}

document.getElementById("rollout-start").addEventListener("submit", async (event) => {
  event.preventDefault();
  const name = document.getElementById("rollout-plugin").value;
  const input = document.getElementById("rollout-file");
  const file = input.files[0];
  if (!name || !file) return;
  const started = await act(
    "POST",
    `/v1/plugins/${encodeURIComponent(name)}/candidate`,
    file,
    `Put ${file.name} on trial as ${name}'s candidate? It is compared in shadow, then answers a growing share of picks as [plugins.rollout.${name}] says.`,
    (reply) => `${name}: candidate ${file.name} ${reply.outcome} (${reply.rollout.phase})`,
  );
  if (started) input.value = "";
});

const percent = (share) => (share == null ? "" : `${(share * 100).toFixed(2)}%`);
const micros = (value) => (value == null ? "" : `${value.toFixed(1)} µs`);
const millis = (value) => (value == null ? "" : `${value.toFixed(1)} ms`);

/** Each rollout, running or the last that ended: its phase, and the
 * serving version and the candidate side by side. */
function renderRollouts(rollouts) {
  const container = document.getElementById("rollouts");
  container.replaceChildren();
  for (const rollout of rollouts) {
    const box = document.createElement("div");
    box.className = "rollout";
    box.id = `rollout-${rollout.plugin}`;
    const title = cell("h3", `Rollout of ${rollout.plugin}: `);
    title.appendChild(state(rollout.state));
    box.appendChild(title);
    const meta = [
      `phase ${rollout.phase} (${rollout.share_percent}% of picks)`,
      `candidate ${rollout.candidate.slice(0, 12)} against ${rollout.live.slice(0, 12)}`,
      `running ${Math.round(rollout.elapsed_ms / 1000)} s`,
    ];
    if (rollout.ended) meta.push(`ended: ${rollout.ended.message}`);
    box.appendChild(cell("p", meta.join(" · "), "pool-meta"));
    const c = rollout.comparison;
    const o = c.outcomes;
    box.appendChild(
      table(
        [["this phase"], ["serving", true], ["candidate", true]],
        [
          { cells: ["calls / faults", "", `${c.candidate_calls} / ${c.candidate_faults}`] },
          { cells: ["cost p50", micros(c.cost_micros.live.p50), micros(c.cost_micros.candidate.p50)] },
          { cells: ["cost p99", micros(c.cost_micros.live.p99), micros(c.cost_micros.candidate.p99)] },
          { cells: ["requests placed", String(o.live.requests), String(o.candidate.requests)] },
          { cells: ["error rate", percent(o.live.error_rate), percent(o.candidate.error_rate)] },
          { cells: ["latency p99", millis(o.live.p99_ms), millis(o.candidate.p99_ms)] },
          { cells: ["disagreement (shadow)", "", `${percent(c.distribution_disagreement)} of picks moved, ${c.compared} compared`] },
        ],
      ),
    );
    if (rollout.phases.length) {
      const list = document.createElement("ol");
      for (const phase of rollout.phases) {
        list.appendChild(cell("li", `${phase.phase} at ${phase.share_percent}%: ${phase.result}`));
      }
      box.appendChild(list);
    }
    container.appendChild(box);
  }
}

function refreshSoon() {
  if (refreshTimer) return;
  refreshTimer = setTimeout(() => {
    refreshTimer = null;
    refresh();
  }, REFRESH_AFTER_EVENT_MS);
}

const KEEP_EVENTS = 100;
let lastEventId = 0;

/** One server-sent event: its kind, id and JSON data; null for a comment. */
function parseEvent(text) {
  const event = { kind: "message" };
  const data = [];
  for (const line of text.split("\n")) {
    const colon = line.indexOf(":");
    if (colon === 0) continue;
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
    if (field === "event") event.kind = value;
    else if (field === "id") event.id = Number(value);
    else if (field === "data") data.push(value);
  }
  if (!data.length) return null;
  try {
    event.body = JSON.parse(data.join("\n"));
  } catch (error) {
    event.body = { data: data.join("\n") };
  }
  return event;
}

/** An event in a line, as an operator reads it. */
function describeEvent(kind, data) {
  if (kind === "health") {
    return `${data.pool} ${data.endpoint}: ${data.from} → ${data.to}${data.reason ? ` (${data.reason})` : ""}`;
  }
  if (kind === "alert" && data.message) return `${data.severity} ${data.pool}: ${data.message}`;
  if (kind === "plugin") {
    const rest = Object.entries(data)
      .filter(([key]) => key !== "plugin" && key !== "event")
      .map(([key, value]) => `${key} ${typeof value === "string" ? value : JSON.stringify(value)}`);
    return `${data.plugin}: ${data.event}${rest.length ? ` (${rest.join(", ")})` : ""}`;
  }
  if (kind === "config") {
    const parts = ["added", "changed", "removed"]
      .filter((key) => Array.isArray(data[key]) && data[key].length)
      .map((key) => `${key} ${data[key].join(", ")}`);
    return parts.length ? parts.join("; ") : "applied, nothing changed";
  }
  if (kind === "discovery") {
    if (data.error) return `${data.pool}: ${data.dns} failed (${data.error}); kept ${data.kept} endpoint(s)`;
    if (data.change) return `${data.pool} ${data.endpoint}: ${data.change}`;
    return `${data.pool}: ${data.dns} gave ${(data.endpoints ?? []).join(", ") || "nothing"}`;
  }
  if (kind === "registration") {
    return `${data.pool} ${data.address}: ${data.change} (registration ${data.id})`;
  }
  return JSON.stringify(data);
}

function showEvent(event) {
  const data = event.body.data ?? {};
  if (event.kind === "alert" && !data.message) return;
  const list = document.getElementById("events");
  const item = document.createElement("li");
  item.appendChild(cell("span", event.kind, "kind"));
  const when = new Date(event.body.at_unix_ms).toLocaleTimeString();
  item.appendChild(document.createTextNode(`${when} ${describeEvent(event.kind, data)}`));
  list.prepend(item);
  while (list.children.length > KEEP_EVENTS) list.lastChild.remove();
}

/** Follows /v1/events (with the token, which EventSource cannot send). */
async function follow() {
  for (;;) {
    try {
      // The first time, every event the server kept; after a break, those missed.
      const response = await fetch("/v1/events", {
        headers: { ...headers(), "last-event-id": String(lastEventId) },
      });
      if (!response.ok || !response.body) throw new Error(String(response.status));
      streaming = true;
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffered = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffered += value;
        let end;
        while ((end = buffered.indexOf("\n\n")) >= 0) {
          const event = parseEvent(buffered.slice(0, end));
          buffered = buffered.slice(end + 2);
          if (event) {
            lastEventId = event.id ?? lastEventId;
            showEvent(event);
            refreshSoon();
          }
        }
      }
    } catch (error) {
      // Reconnected below; polling covers the gap.
    }
    streaming = false;
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
}


// Charts of the last minutes: each pool's /v1/pools/{pool}/traffic is
// sampled every 2 s and differenced: requests/s, error rate, and p50/p99
// response time of the requests of each interval; requests/s by class.
const CHARTED_POOLS = 12;
const SAMPLE_EVERY_MS = 2000;
const KEEP_SAMPLES = 150;
const traffic = new Map();
let poolNames = [];

/** The `q` quantile, in ms, of the observations between two cumulative
 * histograms: linear within the bucket holding the rank. */
function quantileBetween(bounds, now, before, q) {
  const count = now[now.length - 1] - before[before.length - 1];
  const total = Math.max(count, 0);
  if (total === 0) return null;
  const rank = q * total;
  let below = 0;
  for (let at = 0; at < bounds.length; at += 1) {
    const cumulative = now[at] - before[at];
    if (cumulative >= rank && cumulative > below) {
      const lower = at === 0 ? 0 : bounds[at - 1];
      const share = (rank - below) / (cumulative - below);
      return (lower + (bounds[at] - lower) * share) * 1000;
    }
    below = cumulative;
  }
  return bounds[bounds.length - 1] * 1000;
}

function chartWidth(container) {
  return Math.max(280, Math.min(container.clientWidth || 900, 1200));
}

function fromZero(chart, min, max) {
  return [0, Math.max(1, (max ?? 0) * 1.15)];
}

function makeChart(container, series, axes) {
  return new uPlot(
    {
      width: chartWidth(container),
      height: 170,
      scales: {
        // Always the last five minutes, however few points there are yet.
        x: { time: true, range: (chart, min, max) => [max - 300, max] },
        // Rates and times from zero, so a flat line reads as flat.
        y: { range: fromZero },
        rps: { range: fromZero },
        ms: { range: fromZero },
        pct: { range: [0, 100] },
      },
      series: [{}, ...series],
      axes: [{}, ...axes],
    },
    [[], ...series.map(() => [])],
    container,
  );
}

function trafficEntry(name) {
  let entry = traffic.get(name);
  if (entry) return entry;
  const container = document.createElement("div");
  container.className = "chart";
  container.appendChild(cell("h3", name));
  const main = document.createElement("div");
  const byClass = document.createElement("div");
  container.append(main, byClass);
  document.getElementById("traffic").appendChild(container);
  entry = {
    last: null,
    data: [[], [], [], [], []],
    classes: new Map(),
    container,
    byClass,
    chart: makeChart(
      main,
      [
        { label: "requests/s", scale: "rps", stroke: "#0969da", width: 2 },
        { label: "errors %", scale: "pct", stroke: "#cf222e", dash: [2, 3] },
        { label: "p50 ms", scale: "ms", stroke: "#1a7f37" },
        { label: "p99 ms", scale: "ms", stroke: "#9a6700", dash: [6, 3] },
      ],
      [
        { scale: "rps", label: "req/s" },
        { scale: "ms", side: 1, label: "ms", grid: { show: false } },
      ],
    ),
    classChart: null,
  };
  traffic.set(name, entry);
  return entry;
}

function keepLast(array) {
  if (array.length > KEEP_SAMPLES) array.splice(0, array.length - KEEP_SAMPLES);
}

async function sampleTraffic() {
  for (const name of poolNames.slice(0, CHARTED_POOLS)) {
    let now;
    try {
      now = await api(`/v1/pools/${encodeURIComponent(name)}/traffic`);
    } catch (error) {
      continue;
    }
    if (!now) return;
    const entry = trafficEntry(name);
    const before = entry.last;
    entry.last = now;
    if (!before) continue;
    const seconds = (now.at_unix_ms - before.at_unix_ms) / 1000;
    if (seconds <= 0) continue;
    const requests = now.requests - before.requests;
    const failures = now.failures - before.failures;
    const bounds = now.duration.bounds_seconds;
    const cumulative = [...now.duration.cumulative, now.duration.count];
    const earlier = [...before.duration.cumulative, before.duration.count];
    const row = [
      now.at_unix_ms / 1000,
      requests / seconds,
      requests > 0 ? (100 * failures) / requests : 0,
      quantileBetween(bounds, cumulative, earlier, 0.5),
      quantileBetween(bounds, cumulative, earlier, 0.99),
    ];
    row.forEach((value, index) => {
      entry.data[index].push(value);
      keepLast(entry.data[index]);
    });
    entry.chart.setData(entry.data);
    sampleClasses(entry, now, before, seconds);
  }
}

/** Requests/s of each class seen in the pool, on a chart of its own. */
function sampleClasses(entry, now, before, seconds) {
  const previous = new Map(before.classes.map((c) => [c.class, c.requests]));
  for (const { class: name, requests } of now.classes) {
    if (!entry.classes.has(name)) entry.classes.set(name, entry.data[0].slice(0, -1).map(() => null));
    const rate = previous.has(name) ? (requests - previous.get(name)) / seconds : null;
    const series = entry.classes.get(name);
    series.push(rate);
    keepLast(series);
  }
  if (entry.classes.size === 0) return;
  const names = [...entry.classes.keys()].sort();
  if (!entry.classChart || entry.classChart.series.length !== names.length + 1) {
    if (entry.classChart) entry.classChart.destroy();
    const dashes = [[], [6, 3], [2, 3], [8, 2, 2, 2], [1, 2]];
    entry.classChart = makeChart(
      entry.byClass,
      names.map((name, index) => ({
        label: `${name} requests/s`,
        stroke: ["#8250df", "#0969da", "#1a7f37", "#9a6700", "#6e7781"][index % 5],
        dash: dashes[index % 5],
      })),
      [{ label: "req/s by class" }],
    );
  }
  entry.classChart.setData([entry.data[0], ...names.map((name) => entry.classes.get(name))]);
}

window.addEventListener("resize", () => {
  for (const entry of traffic.values()) {
    entry.chart.setSize({ width: chartWidth(entry.container), height: 170 });
    if (entry.classChart) {
      entry.classChart.setSize({ width: chartWidth(entry.container), height: 170 });
    }
  }
});

document.getElementById("login").addEventListener("submit", (event) => {
  event.preventDefault();
  token = document.getElementById("token").value.trim();
  sessionStorage.setItem(TOKEN_KEY, token);
  refresh();
});

refresh();
follow();
setInterval(refresh, POLL_EVERY_MS);
setInterval(sampleTraffic, SAMPLE_EVERY_MS);
