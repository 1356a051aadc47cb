// The run-wide record of the daemons tests start, and the reaper that stops
// whatever of them is still running when a run ends — normally, after a suite
// crashed, or after jest was interrupted.
//
// Every process the harness spawns (spawnManaged: snmpd, snmptrapd, libvirtd,
// the agent, …) leads its own process group and is recorded as a file
// procs/<pid>-<starttime>.json in $VMM_TEST_RUN_DIR, removed again when the
// harness has reaped it. Processes the harness only knows from pid files
// (QEMU guests a session libvirtd daemonised) are recorded as the pid-file
// paths plus the uid they run as. The reaper signals nothing it cannot tie to
// such a record: a recorded pid must still have the start time it had when it
// was recorded, a group member must have started after its leader, and a pid
// from a pid file must belong to the recorded uid and have started before the
// file was written. Never by name.
//
// Plain CommonJS so that the test runner (scripts/run-tests.js), jest's
// global teardown and the TypeScript harness can all use it.
'use strict';
const fs = require('fs');
const path = require('path');

const RUN_DIR_ENV = 'VMM_TEST_RUN_DIR';
/** USER_HZ: the unit of /proc/<pid>/stat's starttime (100 on every Linux ABI Node runs on). */
const CLOCK_TICKS = 100;

function runDir() {
  const dir = process.env[RUN_DIR_ENV];
  return dir ? dir : undefined;
}

/** { state, ppid, pgrp, starttime } from /proc/<pid>/stat, or null when there is no such process. */
function readStat(pid) {
  let text;
  try {
    text = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return null;
  }
  // Fields after the parenthesised command name (which may contain ") "):
  // 3 state, 4 ppid, 5 pgrp, …, 22 starttime.
  const rest = text.slice(text.lastIndexOf(')') + 2).split(' ');
  return { state: rest[0], ppid: Number(rest[1]), pgrp: Number(rest[2]), starttime: rest[19] };
}

function uidOf(pid) {
  try {
    return fs.statSync(`/proc/${pid}`).uid;
  } catch {
    return null;
  }
}

function commandOf(pid) {
  try {
    const argv = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean);
    return argv.join(' ').replace(/\s+/g, ' ');
  } catch {
    return '?';
  }
}

let bootTimeMs;
/** Wall-clock ms at which a process with this starttime (clock ticks since boot) started. */
function startedAtMs(starttime) {
  if (bootTimeMs === undefined) {
    const btime = /^btime (\d+)$/m.exec(fs.readFileSync('/proc/stat', 'utf8'));
    bootTimeMs = btime ? Number(btime[1]) * 1000 : 0;
  }
  return bootTimeMs + (Number(starttime) * 1000) / CLOCK_TICKS;
}

function allPids() {
  return fs.readdirSync('/proc').filter((name) => /^\d+$/.test(name)).map(Number);
}

function writeRecord(subdir, name, record) {
  const dir = runDir();
  if (!dir) return undefined;
  const file = path.join(dir, subdir, name);
  try {
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(file, JSON.stringify(record));
    return file;
  } catch {
    // A run dir removed under us (the run is over); nothing left to record into.
    return undefined;
  }
}

/**
 * Records a process we just spawned (and, when `group`, the process group it
 * leads). Returns the record's path for forget(), or undefined outside a test
 * run or when the process is already gone.
 */
function recordProcess(pid, { command, group }) {
  const stat = readStat(pid);
  if (stat === null) return undefined;
  return writeRecord('procs', `${pid}-${stat.starttime}.json`, {
    pid,
    starttime: stat.starttime,
    group: Boolean(group),
    command,
    recordedBy: process.pid,
  });
}

/**
 * Records pid files whose processes run as `uid` and are ours to stop: the
 * files themselves, and every *.pid file in `dirs` (except `exclude` names).
 */
function recordPidFiles({ files = [], dirs = [], exclude = [], uid, owner }) {
  const name = `${process.pid}-${Date.now()}-${Math.random().toString(36).slice(2, 8)}.json`;
  return writeRecord('pidfiles', name, { files, dirs, exclude, uid, owner });
}

/**
 * Records a network namespace a test made (its name), so that a run whose
 * suite crashed before deleting it can delete it: reapNamespaces().
 */
function recordNamespace(name) {
  return writeRecord('netns', `${name}.json`, { name, recordedBy: process.pid });
}

/**
 * Deletes every recorded network namespace that still exists (after reap():
 * the processes in them are stopped first) and its record. Returns the names
 * deleted.
 */
function reapNamespaces(dir = runDir()) {
  if (!dir) return [];
  const deleted = [];
  for (const record of readRecords(dir, 'netns')) {
    if (typeof record.name !== 'string' || !/^[\w.-]+$/.test(record.name)) continue;
    if (fs.existsSync(path.join('/run/netns', record.name))) {
      try {
        require('child_process').execFileSync('ip', ['netns', 'del', record.name], { stdio: 'ignore' });
        deleted.push(record.name);
      } catch {
        // Not ours to delete after all (no permission): leave it and its record.
        continue;
      }
    }
    fs.rmSync(path.join(dir, 'netns', `${record.name}.json`), { force: true });
  }
  return deleted;
}

function forget(recordFile) {
  if (recordFile) fs.rmSync(recordFile, { force: true });
}

function readRecords(dir, subdir) {
  let names;
  try {
    names = fs.readdirSync(path.join(dir, subdir));
  } catch {
    return [];
  }
  const records = [];
  for (const name of names) {
    try {
      records.push(JSON.parse(fs.readFileSync(path.join(dir, subdir, name), 'utf8')));
    } catch {
      // Half-written by a worker killed mid-write: nothing to go on.
    }
  }
  return records;
}

function isLive(stat) {
  return stat !== null && stat.state !== 'Z' && stat.state !== 'X';
}

/**
 * Processes of the run that are still alive, per the records in `dir`:
 * [{ pid, command, why, group? }] where `group` is a process group id that
 * may be signalled as a whole.
 */
function findLeftovers(dir = runDir()) {
  if (!dir) return [];
  const found = new Map();
  const add = (pid, why, group) => {
    if (pid === process.pid || found.has(pid)) return;
    found.set(pid, { pid, command: commandOf(pid), why, group });
  };

  const procs = readRecords(dir, 'procs');
  const groups = procs.filter((r) => r.group);
  let table;
  if (groups.length > 0) {
    table = allPids().map((pid) => ({ pid, stat: readStat(pid) })).filter((p) => isLive(p.stat));
  }
  for (const record of procs) {
    const stat = readStat(record.pid);
    const leaderIsOurs = isLive(stat) && stat.starttime === record.starttime;
    if (leaderIsOurs) add(record.pid, 'recorded when spawned', record.group ? record.pid : undefined);
    if (!record.group) continue;
    // A group id stays allocated while any member lives, so members that
    // started after the recorded leader are the leader's descendants.
    for (const { pid, stat: member } of table) {
      if (member.pgrp === record.pid && Number(member.starttime) >= Number(record.starttime)) {
        add(pid, `in the process group of ${record.pid}`, record.pid);
      }
    }
  }

  for (const record of readRecords(dir, 'pidfiles')) {
    const files = [...record.files];
    for (const d of record.dirs) {
      try {
        for (const name of fs.readdirSync(d)) {
          if (name.endsWith('.pid') && !record.exclude.includes(name)) files.push(path.join(d, name));
        }
      } catch {
        // Directory not created (yet) or already removed.
      }
    }
    for (const file of files) {
      let pid;
      let writtenAt;
      try {
        pid = Number(fs.readFileSync(file, 'utf8').trim());
        writtenAt = fs.statSync(file).mtimeMs;
      } catch {
        continue;
      }
      if (!Number.isInteger(pid) || pid <= 1) continue;
      const stat = readStat(pid);
      if (!isLive(stat) || uidOf(pid) !== record.uid) continue;
      // The file was written by the process after it started; a process that
      // started later only reuses the number. (btime has 1 s resolution.)
      if (startedAtMs(stat.starttime) > writtenAt + 2000) continue;
      add(pid, `pid file ${file}${record.owner ? ` of ${record.owner}` : ''}`);
    }
  }
  return [...found.values()];
}

/** Live (not zombie) children of `pid`. */
function childrenOf(pid) {
  const children = [];
  for (const candidate of allPids()) {
    const stat = readStat(candidate);
    if (isLive(stat) && stat.ppid === pid) children.push(candidate);
  }
  return children;
}

function signal(target, sig) {
  try {
    process.kill(target, sig);
    return true;
  } catch {
    return false;
  }
}

const sleeper = new Int32Array(new SharedArrayBuffer(4));
function sleepSync(ms) {
  Atomics.wait(sleeper, 0, 0, ms);
}

/** One line about a stopped process, its command cut to `width` characters. */
function describeLeftover(p, width = 110) {
  const command = p.command.length > width ? `${p.command.slice(0, width - 1)}…` : p.command;
  return `pid ${p.pid}: ${command} (${p.why})`;
}

/**
 * Stops every leftover process of the run: SIGTERM (to the process group
 * where the record allows it), up to `graceMs` to exit, then SIGKILL.
 * Synchronous, so it also works from an exit path. Returns what it found.
 */
function reap(dir = runDir(), { graceMs = 3000 } = {}) {
  const stopped = [];
  const seen = new Set();
  for (const sig of ['SIGTERM', 'SIGKILL']) {
    const deadline = Date.now() + (sig === 'SIGTERM' ? graceMs : 5000);
    let leftovers = findLeftovers(dir);
    for (const p of leftovers) {
      if (!seen.has(p.pid)) {
        seen.add(p.pid);
        stopped.push(p);
      }
      if (p.group !== undefined) signal(-p.group, sig);
      signal(p.pid, sig);
    }
    while (leftovers.length > 0 && Date.now() < deadline) {
      sleepSync(25);
      leftovers = findLeftovers(dir);
    }
    if (leftovers.length === 0) break;
  }
  return stopped;
}

module.exports = {
  RUN_DIR_ENV,
  signal,
  runDir,
  readStat,
  recordProcess,
  recordPidFiles,
  recordNamespace,
  reapNamespaces,
  forget,
  findLeftovers,
  childrenOf,
  reap,
  describeLeftover,
};
