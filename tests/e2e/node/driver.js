#!/usr/bin/env node
// Drives the npm `nacos` package's NacosNamingClient (nacos-naming) for tests/e2e/test_node_client.py.
//
// Usage: node driver.js '<scenario JSON>'   (or the scenario JSON on stdin when no argument)
//
// Scenario: {
//   "server": "127.0.0.1:8848",            // the node; only 127.0.0.1 is ever contacted
//   "namespace": "default",                // optional; omitted = the client's own default
//   "clients": {"dev": {"namespace": "dev"}},  // optional further clients (the first is "main")
//   "trace": true,                         // optional: an {"event":"http"} line per request
//   "interactive": false,                  // true: after "steps", run JSON steps read from stdin, one a line, until EOF
//   "timeoutMs": 60000,                    // watchdog: exit 3 if the whole run takes longer
//   "steps": [{"op": "registerInstance", "serviceName": "orders", "instance": {...}, "groupName": "G"}, ...]
// }
// Steps (each may name "client"; default "main"): registerInstance, deregisterInstance
// {serviceName, instance, groupName?}; getAllInstances {serviceName, groupName?, clusters?, subscribe?};
// selectInstances {... healthy?}; getServerStatus; getServiceList {pageNo, pageSize, groupName?};
// subscribe / unsubscribe {serviceName, groupName?, clusters?, id?}; sleep {ms}.
//
// Stdout carries JSON lines only: {"event":"ready"}, one {"event":"result","op",...,"ok","value"|"error","t"}
// per step, {"event":"hosts","id","t","hosts"} each time a subscribe listener fires, {"event":"log"} for each
// warn/error the client logs, {"event":"clientError"} for its error events, and {"event":"closed"} at the end.
// "t" is Date.now() when the line was written. The exit code is 0 when every step succeeded.
'use strict';

const { createRequire } = require('module');
const util = require('util');
const readline = require('readline');

const scenario = JSON.parse(process.argv[2] || require('fs').readFileSync(0, 'utf8'));
const LOOPBACK = '127.0.0.1';

function emit(event) {
  process.stdout.write(JSON.stringify({ ...event, t: Date.now() }) + '\n');
}

// Resolve the client's own dependencies from its own directory (npm may nest them).
const nacosRequire = createRequire(require.resolve('nacos'));
const namingRequire = createRequire(nacosRequire.resolve('nacos-naming'));

// Pin the address the client advertises for UDP push. nacos-naming's lib/naming/proxy.js evaluates
// `const localIp = require('address').ip()` once, when it is first required, and sends it as `clientIP`
// on every instance/list query. There is no option or environment variable for it, and address.ip()
// picks the first non-loopback IPv4 (eth*, then any interface). So before requiring `nacos` we replace
// ip() on the very `address` module instance nacos-naming will get from the require cache.
const address = namingRequire('address');
address.ip = () => LOOPBACK;
const urllib = namingRequire('urllib');
const { NacosNamingClient } = require('nacos');

let failures = 0;
const watchdog = setTimeout(() => {
  emit({ event: 'timeout', timeoutMs: scenario.timeoutMs || 60000 });
  process.exit(3);
}, scenario.timeoutMs || 60000);
watchdog.unref();

function quietLogger(name) {
  const write = (level, args) => process.stderr.write(`[${name}] ${level} ${util.format(...args)}\n`);
  return {
    debug: () => {},
    info: (...args) => { if (scenario.verbose) write('info', args); },
    warn: (...args) => { write('warn', args); emit({ event: 'log', client: name, level: 'warn', message: util.format(...args) }); },
    error: (...args) => { write('error', args); emit({ event: 'log', client: name, level: 'error', message: util.format(...args) }); },
  };
}

// The client's `httpclient` option (default: urllib) wrapped: refuse anything but the loopback node,
// and report each request when tracing.
function tracingHttpClient(name) {
  return {
    async request(url, options) {
      const target = new URL(url);
      if (target.hostname !== LOOPBACK) {
        throw new Error(`driver: refusing a request to ${target.host}; only ${LOOPBACK} is allowed`);
      }
      const result = await urllib.request(url, options);
      if (scenario.trace) {
        const body = typeof result.data === 'string' ? result.data : String(result.data);
        emit({
          event: 'http', client: name, method: options.method, path: target.pathname,
          params: options.data || {}, status: result.status, body: body.slice(0, 2000),
        });
      }
      return result;
    },
  };
}

const clientOptions = { main: scenario.namespace === undefined ? {} : { namespace: scenario.namespace } };
Object.assign(clientOptions, scenario.clients || {});
const clients = {};
for (const [name, options] of Object.entries(clientOptions)) {
  const client = new NacosNamingClient({
    ...options,
    logger: quietLogger(name),
    serverList: scenario.server,
    httpclient: tracingHttpClient(name),
  });
  // The host reactor (list polling) reports failures as error events, not through the logger.
  client._hostReactor.on('error', err => emit({ event: 'clientError', client: name, message: String(err && err.message) }));
  client.on('error', err => emit({ event: 'clientError', client: name, message: String(err && err.message) }));
  clients[name] = client;
}

const listeners = new Map();

function listenerKey(step) {
  return `${step.client || 'main'}|${step.id || step.serviceName}`;
}

function subscribeInfo(step) {
  const info = { serviceName: step.serviceName };
  if (step.groupName !== undefined) info.groupName = step.groupName;
  if (step.clusters !== undefined) info.clusters = step.clusters;
  return info;
}

async function runStep(step) {
  const client = clients[step.client || 'main'];
  if (!client) throw new Error(`no client named ${step.client}`);
  switch (step.op) {
    case 'registerInstance':
      return client.registerInstance(step.serviceName, step.instance, step.groupName);
    case 'deregisterInstance':
      return client.deregisterInstance(step.serviceName, step.instance, step.groupName);
    case 'getAllInstances':
      return client.getAllInstances(step.serviceName, step.groupName, step.clusters, step.subscribe);
    case 'selectInstances':
      return client.selectInstances(step.serviceName, step.groupName, step.clusters, step.healthy, step.subscribe);
    case 'getServerStatus':
      return client.getServerStatus();
    case 'getServiceList':
      // Not on NacosNamingClient in 2.6.x: the client's naming proxy has it (GET /v1/ns/service/list).
      return (client.getServiceList ? client : client._serverProxy)
        .getServiceList(step.pageNo, step.pageSize, step.groupName);
    case 'subscribe': {
      const id = step.id || step.serviceName;
      const listener = hosts => emit({ event: 'hosts', id, client: step.client || 'main', hosts });
      listeners.set(listenerKey(step), listener);
      client.subscribe(subscribeInfo(step), listener);
      return null;
    }
    case 'unsubscribe':
      client.unSubscribe(subscribeInfo(step), listeners.get(listenerKey(step)));
      listeners.delete(listenerKey(step));
      return null;
    case 'sleep':
      return new Promise(resolve => setTimeout(resolve, step.ms));
    default:
      throw new Error(`unknown op ${step.op}`);
  }
}

async function run(step, index) {
  try {
    const value = await runStep(step);
    emit({ event: 'result', step: index, op: step.op, tag: step.tag, ok: true, value: value === undefined ? null : value });
  } catch (err) {
    if (!step.mayFail) failures += 1;
    emit({ event: 'result', step: index, op: step.op, tag: step.tag, ok: false, error: String(err && err.message) });
  }
}

async function main() {
  await Promise.all(Object.values(clients).map(c => c.ready()));
  emit({ event: 'ready', clientIP: address.ip(), udpPort: clients.main._hostReactor._pushReceiver.udpPort });
  let index = 0;
  for (const step of scenario.steps || []) await run(step, index++);
  if (scenario.interactive) {
    for await (const line of readline.createInterface({ input: process.stdin, crlfDelay: Infinity })) {
      if (line.trim()) await run(JSON.parse(line), index++);
    }
  }
  await Promise.all(Object.values(clients).map(c => c.close()));
  emit({ event: 'closed' });
}

// close() stops the beat loop only after its current sleep (up to clientBeatInterval, 10 s at first),
// whose timer keeps the process alive; so exit explicitly once everything is closed and written.
main().then(
  () => process.stdout.write('', () => process.exit(failures ? 1 : 0)),
  err => {
    emit({ event: 'fatal', message: String(err && err.stack) });
    process.stdout.write('', () => process.exit(2));
  },
);
