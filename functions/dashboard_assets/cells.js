// HybridHPC dashboard: the cells of its tables, loaded before app.js (index.html), which reads
// the cluster and wires the page. Every value is written with textContent (never as HTML), so
// no job name or output runs script. The pure ones (priorityName, nodeStateText, taskNote) are
// run under Node.js by tests/test_dashboard_cells.py.
"use strict";

// The names a priority is given by (shared/domain/models.py PRIORITY_NAMES), as the CLI shows it.
const PRIORITY_NAMES = {
  0: "Lowest", 1000: "BelowNormal", 2000: "Normal", 3000: "AboveNormal", 4000: "Highest",
};

const $ = (id) => document.getElementById(id);

function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

function when(text) {
  if (!text) return "-";
  const moment = new Date(text);
  return Number.isNaN(moment.getTime()) ? text : moment.toLocaleString();
}

function badge(stateName, text = stateName) {
  return el("span", text, `state state-${String(stateName).toLowerCase()}`);
}

function row(cells) {
  const tr = document.createElement("tr");
  for (const cell of cells) {
    const td = document.createElement("td");
    if (cell instanceof Node) td.appendChild(cell);
    else td.textContent = cell === undefined || cell === null || cell === "" ? "-" : String(cell);
    tr.appendChild(td);
  }
  return tr;
}

function fill(tableId, rows, empty) {
  const body = $(tableId).querySelector("tbody");
  body.replaceChildren(...rows);
  if (!rows.length) {
    const td = el("td", empty, "empty");
    td.colSpan = $(tableId).querySelectorAll("th").length;
    const tr = document.createElement("tr");
    tr.appendChild(td);
    body.appendChild(tr);
  }
}

// The cells that are words for a number or a flag (pure: tests/test_dashboard_cells.py runs them).

function priorityName(value) {
  return Object.hasOwn(PRIORITY_NAMES, value) ? PRIORITY_NAMES[value] : value;
}

// An admin's drain or offline holds a node until it is started (its reason may say otherwise).
// A Draining node that runs no task any more reads Drained, as Slurm's DRAINED.
function nodeStateText(node) {
  const shown = node.state === "Draining" && node.runningTasks === 0 ? "Drained" : node.state;
  return node.held ? `${shown} (held)` : shown;
}

// A node's reason as `hpc node list` shows it (hpc/render_nodes.py node_reason): a held node
// whose agent then stopped keeps the why of its hold beside "agent stopped".
function nodeReasonText(node) {
  if (node.held && node.heldReason && node.stateReason === "agent stopped") {
    return `${node.heldReason} (agent stopped)`;
  }
  return node.stateReason;
}

// A node's memory as the CLI shows it (shared/domain/memory.py shown): `unknown` when none.
// The tenths round down (24063 MB: "23.4 GB"; 23.5 GB would be more than it has).
function memoryText(mb, unknown = "-") {
  if (mb === null || mb === undefined) return unknown;
  if (mb >= 1024 && mb % 1024 === 0) return `${mb / 1024} GB`;
  const tenths = Math.floor((mb * 10) / 1024);
  if (mb < 1024 || tenths % 10 === 0) return `${mb} MB`;
  return `${Math.floor(tenths / 10)}.${tenths % 10} GB`;
}

// A node's memory no task holds, as `hpc node list` words it (hpc/render_nodes.py
// free_memory): none free is "0 MB", unknown "-".
function freeMemoryText(node) {
  return memoryText(node.freeMemoryMb);
}

// [free cores, free memory] as `hpc node list` shows them: "-" for a node that takes no
// work (Offline, Starting, Stopping, Unreachable), whose "0" and "0 MB" read as full.
function freeCells(node) {
  if (node.state !== "Online" && node.state !== "Draining") return ["-", "-"];
  return [node.freeCores, freeMemoryText(node)];
}

// What a job's tasks ask of each node's memory (their minMemoryMb; a first page of them), as
// `hpc job view` words it (hpc/render.py memory_request); null when none asks.
function memoryRequest(tasks) {
  const values = [...new Set(tasks.map((task) => task.minMemoryMb ?? null))];
  const given = values.filter((v) => Number.isInteger(v) && v > 0).sort((a, b) => a - b);
  if (!given.length) return null;
  if (values.length === 1) return `${memoryText(given[0])} per node`;
  const forms = given.slice(0, 4).map((mb) => memoryText(mb));
  if (given.length > 4) forms.push("...");
  if (given.length < values.length) forms.push("none");
  return `per task: ${forms.join(", ")}`;
}

// A queued task says why it waits; an error it keeps is its last attempt's, not its state's.
// One that waits for what its job waits for (``jobReason``, shown above the table) says so in
// two words, not the job's reason again on each of its rows (seen in a browser: 18 rows of
// the same three lines).
function taskNote(task, jobReason = null) {
  if (task.state !== "Queued") return task.error || task.pendingReason;
  const why = jobReason && task.pendingReason === jobReason ? "as its job" : task.pendingReason;
  const last = task.error ? `last attempt: ${task.error}` : "";
  return [why, last].filter(Boolean).join("; ");
}

// "1 job", "2 jobs", "100+ jobs" (``more``: the count is a first page's).
function counted(n, word, more = false) {
  return `${n}${more ? "+" : ""} ${word}${n === 1 && !more ? "" : "s"}`;
}

// The header's line (seen in a browser: "1 jobs running").
function summaryText(c) {
  return `${c.online}/${counted(c.nodes, "node")} online · ${c.busy}/${c.cores} cores busy · ` +
    `${counted(c.running, "job", c.runningMore)} running · ${c.queued}${c.queuedMore ? "+" : ""} queued`;
}

// The actions a job's state allows (the API refuses the others with a 409): its buttons are
// enabled for these only (seen in a browser: Requeue and Release offered on a Running job).
function jobActions(job) {
  const open = ["Submitted", "Queued", "Running"].includes(job.state);
  const actions = [];
  if (open) actions.push("cancel");
  if (open && !job.held) actions.push("hold");
  if ((open || job.state === "Canceling") && (job.held || job.holdUntil)) actions.push("release");
  if (job.state === "Failed" || job.state === "Canceled") actions.push("requeue");
  return actions;
}

// Whether the signed-in user (``me``: GET me) may act on a job and read its tasks' output: its
// owner or an admin (the API's rule). Seen in a browser: another user's job offered Cancel and
// Hold, and its task's output pane repeated a 403 every refresh.
function mayChange(job, me) {
  return Boolean(me) && (me.role === "admin" || job.owner === me.name);
}

// The actions a node's state allows, by the API's rules (README, node actions): start what is
// Offline, Draining or (a VM) Stopping; drain what takes work; stop a VM that runs; offline
// what is not held offline already; release a VM held off. Seen in a browser: every button on
// every node, start on an Online one.
function nodeActions(node) {
  const vm = node.provider !== "onprem";
  const s = node.state;
  const actions = [];
  if (s === "Offline" || s === "Draining" || (vm && s === "Stopping")) actions.push("start");
  if (s === "Online" || (s === "Draining" && !node.held)) actions.push("drain");
  if (vm && ["Starting", "Online", "Draining"].includes(s)) actions.push("stop");
  if (!(s === "Offline" && node.held === "offline")) actions.push("offline");
  if (vm && s === "Offline" && node.held) actions.push("release");
  return actions;
}

function progress(job) {
  const counts = job.taskCounts || {};
  const total = job.taskCount || 0;
  const done = (counts.Finished || 0) + (counts.Failed || 0) + (counts.Canceled || 0);
  const wrap = el("span", null, "progress");
  const bar = el("span", null, "bar-fill");
  bar.style.width = total ? `${Math.round((100 * done) / total)}%` : "0%";
  const outer = el("span", null, "bar-outer");
  outer.appendChild(bar);
  wrap.appendChild(outer);
  const parts = [`${done}/${total}`];
  if (counts.Running) parts.push(`${counts.Running} running`);
  if (counts.Failed) parts.push(`${counts.Failed} failed`);
  // canceled ones end too (a full bar): said, as the CLI's "Canceled N" (a probe)
  if (counts.Canceled) parts.push(`${counts.Canceled} canceled`);
  wrap.appendChild(el("span", ` ${parts.join(", ")}`));
  return wrap;
}

// [busy, total] cores of the nodes that run work: an Online node's all, a Draining one's busy
// ones only (its running tasks count; its idle cores take no work: a probe's summary read
// "2/4 cores busy" beside a drained, empty node)
function coreCounts(nodes) {
  let busy = 0;
  let total = 0;
  for (const n of nodes) {
    const used = n.usedCores || 0;
    busy += used;
    if (n.state === "Online") total += n.cores || 0;
    else if (n.state === "Draining") total += used;
  }
  return [busy, total];
}

function buttons(actions, act) {
  const span = el("span", null, "actions");
  for (const action of actions) {
    const button = el("button", action);
    button.addEventListener("click", (event) => {
      event.stopPropagation(); // not the row's own click
      act(action).catch(report);
    });
    span.appendChild(button);
  }
  return span;
}
