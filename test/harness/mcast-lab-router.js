// The lab router's multicast part (run by mcast-lab.ts inside the router's
// network namespace): a join-driven IGMP/MLD proxy made of kernel pieces,
// because the lab's kernel may lack multicast routing (CONFIG_IP_MROUTE, which
// igmpproxy and every other Debian multicast router need).
// - Membership per downstream: each downstream interface is the only port of
//   a snooping bridge of its own; the kernel's IGMP/MLD snooping keeps its
//   database (entries made by reports, refreshed by answers to queries,
//   gone after the bridge's membership interval without one).
// - Forwarding: for each (group, downstream) with a member, a tc u32 filter on
//   the upstream's ingress mirrors the group's packets out of the downstream
//   (an L2 copy: the TTL is not decremented, the source MAC stays the sender's).
// - Upstream: while some downstream has a member, a socket membership on the
//   upstream (its bridge, whose port the upstream is), so the kernel reports
//   the group there (and the upstream snooping bridge sends the stream to us).
// The database is read every POLL_MS (bridge monitor's output is buffered).
// Each change is logged as one JSON line with the time (process.hrtime, ns).
//
//   node mcast-lab-router.js UPSTREAM_BRIDGE:UPSTREAM_PORT UPSTREAM_ADDRESS4 BRIDGE:PORT[,BRIDGE:PORT...]
'use strict';
const { execFile } = require('child_process');
const dgram = require('dgram');

const POLL_MS = 20;
const [upstreamPair, upstreamAddress4, downstreamList] = process.argv.slice(2);
const [upstreamBridge, upstream] = upstreamPair.split(':');
const downstreams = downstreamList.split(',').map((d) => {
  const [bridge, port] = d.split(':');
  return { bridge, port };
});
const v4 = dgram.createSocket({ type: 'udp4', reuseAddr: true });
const v6 = dgram.createSocket({ type: 'udp6', reuseAddr: true });
/** "group port" → tc filter preference. */
const filters = new Map();
const joinedUpstream = new Set();
let nextPref = 100;
let stopping = false;

function log(event) {
  process.stdout.write(`${JSON.stringify({ t: process.hrtime.bigint().toString(), ...event })}\n`);
}

function run(cmd, args) {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, (err, stdout, stderr) => (err ? reject(new Error(`${cmd} ${args.join(' ')}: ${stderr || err.message}`)) : resolve(stdout)));
  });
}

/** Link-scope groups are the link's own business, never routed. */
function routable(group) {
  return group.includes(':') ? !/^ff.2:/i.test(group) : !group.startsWith('224.0.0.');
}

async function wanted() {
  const want = new Set();
  for (const d of downstreams) {
    const table = JSON.parse(await run('bridge', ['-j', 'mdb', 'show', 'dev', d.bridge]));
    for (const entry of table.flatMap((t) => t.mdb ?? [])) {
      if (entry.port === d.port && routable(entry.grp)) want.add(`${entry.grp} ${d.port}`);
    }
  }
  return want;
}

async function reconcile() {
  const want = await wanted();
  for (const key of want) {
    if (filters.has(key)) continue;
    const [group, port] = key.split(' ');
    const pref = nextPref++;
    const match = group.includes(':') ? ['protocol', 'ipv6', 'pref', String(pref), 'u32', 'match', 'ip6', 'dst', `${group}/128`]
      : ['protocol', 'ip', 'pref', String(pref), 'u32', 'match', 'ip', 'dst', `${group}/32`];
    await run('tc', ['filter', 'add', 'dev', upstream, 'ingress', ...match, 'action', 'mirred', 'egress', 'mirror', 'dev', port]);
    filters.set(key, pref);
    log({ event: 'forward', group, downstream: port });
  }
  for (const [key, pref] of [...filters]) {
    if (want.has(key)) continue;
    const [group, port] = key.split(' ');
    await run('tc', ['filter', 'del', 'dev', upstream, 'ingress', 'pref', String(pref)]);
    filters.delete(key);
    log({ event: 'stop', group, downstream: port });
  }
  const groups = new Set([...want].map((k) => k.split(' ')[0]));
  for (const group of groups) {
    if (joinedUpstream.has(group)) continue;
    if (group.includes(':')) v6.addMembership(group, `::%${upstreamBridge}`);
    else v4.addMembership(group, upstreamAddress4);
    joinedUpstream.add(group);
    log({ event: 'join-upstream', group });
  }
  for (const group of [...joinedUpstream]) {
    if (groups.has(group)) continue;
    if (group.includes(':')) v6.dropMembership(group, `::%${upstreamBridge}`);
    else v4.dropMembership(group, upstreamAddress4);
    joinedUpstream.delete(group);
    log({ event: 'leave-upstream', group });
  }
}

async function loop() {
  while (!stopping) {
    try {
      await reconcile();
    } catch (err) {
      log({ event: 'error', message: err.message });
    }
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
}

let bound = 0;
const start = () => {
  if (++bound < 2) return;
  log({ event: 'ready' });
  void loop();
};
v4.bind(0, start);
v6.bind(0, start);
process.once('SIGTERM', () => {
  stopping = true;
  process.exit(0);
});
