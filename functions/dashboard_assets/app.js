// HybridHPC dashboard: reads the cluster through the same API as the `hpc` CLI.
// Every value is written with textContent (never as HTML), so no job name or output runs script.
"use strict";

const POLL_MS = 5000;
const TAIL_BYTES = 64 * 1024;
const TASK_PAGE = 100;
const JOB_PAGE = 50;
const SUMMARY_JOBS = 100;
const TOKEN_KEY = "hybridhpc.token";
const TASK_ACTIONS = {
  Queued: ["cancel"], Dispatching: ["cancel"], Running: ["cancel"],
  Failed: ["requeue"], Canceled: ["requeue"],
};

const state = {
  view: "jobs",
  jobState: "",
  jobPages: [], // the `before` cursor of each page shown so far ([] = newest page)
  nextJobs: null,
  jobId: null,
  job: null, // the selected job as last read
  taskAfter: [0],
  nextTasks: null,
  task: null,
  timer: null,
  me: null, // GET me, once a sign-in: whose jobs (an admin: every job, and the nodes) it acts on
};

function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

// A token in the URL fragment (#token=...) signs in and is removed from the address bar.
function takeTokenFromFragment() {
  const params = new URLSearchParams(location.hash.slice(1));
  const given = params.get("token");
  if (given) {
    sessionStorage.setItem(TOKEN_KEY, given);
    history.replaceState(null, "", location.pathname + location.search);
  }
}

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

// The API sits beside this page: /api/dashboard -> /api/jobs (any routePrefix).
async function api(path, options = {}) {
  const response = await fetch(new URL(path, location.href), {
    ...options,
    headers: { Authorization: `Bearer ${token()}`, ...(options.headers || {}) },
  });
  if (!response.ok) {
    let message = `${response.status} ${response.statusText}`;
    try {
      const body = await response.json();
      if (body && body.error) message = body.error;
    } catch (_) { /* not JSON */ }
    throw new ApiError(response.status, message);
  }
  return response;
}

async function getJson(path) {
  return (await api(path)).json();
}

function showBanner(message) {
  const banner = $("banner");
  banner.textContent = message || "";
  banner.hidden = !message;
}

function signOut(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  state.me = null; // another token may sign in next
  stopPolling();
  $("views").hidden = true;
  $("tabs").hidden = true;
  $("live").hidden = true;
  $("summary").textContent = "";
  $("login").hidden = false;
  showBanner(message);
}

// --- jobs ------------------------------------------------------------------------------

async function loadJobs() {
  const params = new URLSearchParams({ limit: String(JOB_PAGE) });
  if (state.jobState) params.set("state", state.jobState);
  const before = state.jobPages[state.jobPages.length - 1];
  if (before) params.set("before", String(before));
  const data = await getJson(`jobs?${params}`);
  state.nextJobs = data.next;
  $("jobs-older").disabled = !data.next;
  $("jobs-newer").disabled = !state.jobPages.length;
  fill(
    "jobs",
    data.jobs.map((job) => {
      const tr = row([
        job.id, job.name, job.owner, badge(job.state), priorityName(job.priority), progress(job),
        when(job.submitTime), job.pendingReason,
      ]);
      tr.className = job.id === state.jobId ? "selected clickable" : "clickable";
      tr.addEventListener("click", () => selectJob(job.id));
      return tr;
    }),
    "no jobs",
  );
  if (state.jobId !== null) await loadJob();
}

function selectJob(jobId) {
  state.jobId = jobId;
  state.taskAfter = [0];
  state.task = null;
  $("output").hidden = true;
  refresh();
}

async function loadJob() {
  const job = await getJson(`jobs/${state.jobId}`);
  $("job").hidden = false;
  $("job-title").textContent = `Job ${job.id}${job.name ? ` — ${job.name}` : ""}`;
  const fields = [
    ["State", job.state], ["Owner", job.owner], ["Priority", priorityName(job.priority)],
    ["Node groups", (job.nodeGroups || []).join(", ") || "any"],
    ["Tasks", job.taskCount], ["Submitted", when(job.submitTime)],
    ["Started", when(job.startTime)], ["Ended", when(job.endTime)],
    ["Held", job.held ? "yes" : job.holdUntil ? `until ${when(job.holdUntil)}` : "no"], ["Depends on", (job.dependsOn || []).join(", ")],
    ["Exclusive", job.exclusive ? "yes: no other job on its nodes" : ""],
    ["Why waiting", job.pendingReason], ["Error", job.error],
  ];
  state.job = job;
  // (cells.js: what its state allows, to its owner or an admin; another's job: none)
  const allowed = mayChange(job, state.me) ? jobActions(job) : [];
  for (const button of $("job-actions").querySelectorAll("button")) {
    button.disabled = !allowed.includes(button.dataset.action);
  }
  const dl = $("job-fields");
  dl.replaceChildren();
  for (const [name, value] of fields) {
    if (value === undefined || value === null || value === "") continue;
    dl.appendChild(el("dt", name));
    dl.appendChild(el("dd", value));
  }
  const after = state.taskAfter[state.taskAfter.length - 1];
  const data = await getJson(`jobs/${job.id}/tasks?limit=${TASK_PAGE}&after=${after}`);
  const tasks = data.tasks;
  const memory = memoryRequest(tasks);
  if (memory) {
    dl.appendChild(el("dt", "Memory"));
    dl.appendChild(el("dd", memory));
  }
  state.nextTasks = data.next ?? null; // the API's: a page of exactly 100 has no next
  $("tasks-next").disabled = state.nextTasks === null;
  $("tasks-first").disabled = state.taskAfter.length <= 1;
  fill(
    "tasks",
    tasks.map((task) => {
      const tr = row([
        task.id, task.name, badge(task.state), task.node, task.attempt,
        task.exitCode, taskNote(task, job.pendingReason), taskButtons(task),
      ]);
      tr.className = state.task === task.id ? "selected clickable" : "clickable";
      tr.addEventListener("click", () => { state.task = task.id; loadOutput(); });
      return tr;
    }),
    "no tasks",
  );
  if (state.task !== null) await loadOutput();
}

async function loadStream(stream) {
  const base = `jobs/${state.jobId}/tasks/${state.task}/output?stream=${stream}`;
  const head = await api(`${base}&limit=0`);
  const size = Number(head.headers.get("X-Output-Size") || "0");
  const attempt = head.headers.get("X-Attempt");
  const offset = Math.max(0, size - TAIL_BYTES);
  const page = await api(`${base}&attempt=${attempt}&offset=${offset}&limit=${TAIL_BYTES}`);
  const text = await page.text();
  $(stream).textContent = text || "(empty)";
  const cut = head.headers.get("X-Output-Truncated") === "true" ? ", cut by the agent" : "";
  const shown = offset ? `, last ${TAIL_BYTES} shown` : "";
  $(`${stream}-size`).textContent = `(${size} bytes${shown}${cut})`;
  return attempt;
}

async function loadOutput() {
  if (state.job && !mayChange(state.job, state.me)) {
    // the API answers 403: said once here, not a banner at every refresh
    $("output").hidden = false;
    $("output-title").textContent = `Task ${state.jobId}.${state.task}`;
    $("stdout").textContent = `its output is for ${state.job.owner} and admins only`;
    $("stderr").textContent = "";
    $("stdout-size").textContent = "";
    $("stderr-size").textContent = "";
    return;
  }
  $("output").hidden = false;
  try {
    const attempt = await loadStream("stdout");
    await loadStream("stderr");
    $("output-title").textContent = `Task ${state.jobId}.${state.task}, attempt ${attempt}`;
  } catch (error) {
    // 404: the task (or the attempt asked for) has not run on a node, so it wrote nothing
    if (!(error instanceof ApiError) || error.status !== 404) throw error;
    $("output-title").textContent = `Task ${state.jobId}.${state.task}: no output yet`;
    $("stdout").textContent = error.message;
    $("stderr").textContent = "";
    $("stdout-size").textContent = "";
    $("stderr-size").textContent = "";
  }
}

async function taskAction(taskId, action) {
  if (action === "cancel" && !confirm(`Cancel task ${state.jobId}.${taskId}?`)) return;
  await api(`jobs/${state.jobId}/tasks/${taskId}/${action}`, { method: "POST" });
  await refresh();
}

function taskButtons(task) {
  if (state.job && !mayChange(state.job, state.me)) return "";
  return buttons(TASK_ACTIONS[task.state] || [], (action) => taskAction(task.id, action));
}

async function jobAction(action) {
  if (state.jobId === null) return;
  if (action === "cancel" && !confirm(`Cancel job ${state.jobId}?`)) return;
  await api(`jobs/${state.jobId}/${action}`, { method: "POST" });
  await refresh();
}

// --- nodes and autoscale ---------------------------------------------------------------

async function nodeAction(name, action) {
  if ((action === "stop" || action === "offline") && !confirm(`${action} ${name}?`)) return;
  await api(`nodes/${encodeURIComponent(name)}/${action}`, { method: "POST" });
  await refresh();
}

function nodeButtons(node) {
  // node actions are an admin's: a user is shown none (a probe got 403s)
  if (!state.me || state.me.role !== "admin") return "";
  // (cells.js nodeActions: those its state allows; an on-prem machine has no VM to stop)
  return buttons(nodeActions(node), (action) => nodeAction(node.name, action));
}

async function loadNodes() {
  const data = await getJson("nodes"); // (who signed in: state.me, read once by refresh)
  fill(
    "nodes",
    data.nodes.map((node) => row([
      node.name, badge(node.state, nodeStateText(node)), (node.groups || []).join(", "),
      `${node.provider}${node.spot ? " (spot)" : ""}${node.runsAsOwner ? ", as owner" : ""}`,
      node.cores, memoryText(node.memoryMb), ...freeCells(node), node.runningTasks, when(node.lastHeartbeat),
      nodeReasonText(node), nodeButtons(node),
    ])),
    "no nodes: start agents (hpc agent run) or add nodes (hpc node add)",
  );
}

async function loadAutoscale() {
  const [groups, log] = await Promise.all([getJson("nodegroups"), getJson("autoscale/log?limit=200")]);
  fill(
    "groups",
    groups.groups.map((g) => row([
      // an on-prem group has no bounds: its nodes join by their agents
      g.name, g.provider || "on-prem", g.provider ? g.minNodes : "-", g.provider ? g.maxNodes : "-",
      g.provider ? g.nodeCores : "-",
      g.provider ? memoryText(g.nodeMemoryMb, "unknown") : "-",
      g.provider ? (g.autoscale ? "yes" : "no") : "-", g.provider ? (g.idlePolicy || "-") : "-",
      g.description,
    ])),
    "no node groups",
  );
  fill(
    "decisions",
    log.entries.slice().reverse().map((e) => row([when(e.time), e.action, e.node, e.group, e.reason])),
    "the autoscaler has decided nothing yet",
  );
}

async function loadSummary() {
  const [nodes, running, queued] = await Promise.all([
    // counts up to SUMMARY_JOBS ("100+" beyond): each refresh reads at most that many jobs a list
    getJson("nodes"),
    getJson(`jobs?state=Running&limit=${SUMMARY_JOBS}`),
    getJson(`jobs?state=Queued&limit=${SUMMARY_JOBS}`),
  ]);
  const online = nodes.nodes.filter((n) => n.state === "Online");
  const [busy, cores] = coreCounts(nodes.nodes); // (cells.js)
  $("summary").textContent = summaryText({
    online: online.length, nodes: nodes.nodes.length, busy, cores,
    running: running.jobs.length, runningMore: Boolean(running.next),
    queued: queued.jobs.length, queuedMore: Boolean(queued.next),
  });
}

// --- refresh loop ----------------------------------------------------------------------

function report(error) {
  if (error instanceof ApiError && error.status === 401) {
    signOut(`Signed out: ${error.message}`);
    return;
  }
  showBanner(error instanceof Error ? error.message : String(error));
}

async function refresh() {
  if (!token()) return;
  try {
    if (state.me === null) state.me = await getJson("me"); // once: the buttons depend on it
    const view = { jobs: loadJobs, nodes: loadNodes, autoscale: loadAutoscale }[state.view];
    await Promise.all([loadSummary(), view()]);
    showBanner("");
    $("updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
  } catch (error) {
    report(error);
  }
}

function stopPolling() {
  if (state.timer !== null) clearInterval(state.timer);
  state.timer = null;
}

function startPolling() {
  stopPolling();
  if ($("auto").checked) {
    state.timer = setInterval(() => {
      if (document.visibilityState === "visible") refresh();
    }, POLL_MS);
  }
}

function show(view) {
  state.view = view;
  for (const button of $("tabs").querySelectorAll("button")) {
    button.classList.toggle("active", button.dataset.view === view);
  }
  for (const button of $("tabs").querySelectorAll("button")) {
    $(`view-${button.dataset.view}`).hidden = button.dataset.view !== view;
  }
  refresh();
}

function signedIn() {
  $("login").hidden = true;
  $("views").hidden = false;
  $("tabs").hidden = false;
  $("live").hidden = false;
  show(state.view);
  startPolling();
}

function wire() {
  $("login-form").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $("token").value.trim());
    $("token").value = "";
    signedIn();
  });
  $("signout").addEventListener("click", () => signOut(""));
  $("auto").addEventListener("change", startPolling);
  for (const button of $("tabs").querySelectorAll("button")) {
    button.addEventListener("click", () => show(button.dataset.view));
  }
  $("job-state").addEventListener("change", (event) => {
    state.jobState = event.target.value;
    state.jobPages = [];
    refresh();
  });
  $("jobs-older").addEventListener("click", () => { state.jobPages.push(state.nextJobs); refresh(); });
  $("jobs-newer").addEventListener("click", () => { state.jobPages = []; refresh(); });
  $("tasks-next").addEventListener("click", () => { state.taskAfter.push(state.nextTasks); refresh(); });
  $("tasks-first").addEventListener("click", () => { state.taskAfter = [0]; refresh(); });
  for (const button of $("job-actions").querySelectorAll("button")) {
    button.addEventListener("click", () => jobAction(button.dataset.action).catch(report));
  }
}

document.addEventListener("DOMContentLoaded", () => {
  wire();
  takeTokenFromFragment();
  if (token()) signedIn();
  else signOut("");
});
