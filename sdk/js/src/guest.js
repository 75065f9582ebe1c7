// The glue `switchyard plugin build` binds to the host: it converts between
// the component's values (as jco's QuickJS backend passes them) and the
// SDK's, and keeps a plugin's exceptions from trapping the instance.
// Declarations and examples: guest.d.ts.

import { Balancer } from './balancer.js';
import { parseConfig } from './config.js';
import { HealthCheck } from './health.js';
import { HEALTH } from './types.js';
import { Recovery } from './recovery.js';
import { HttpResponse, ProbeError } from './probe.js';
import { StoreError } from './store.js';
import { bindBackend } from './runtime.js';

/** A u64 as the component passes it (a number, signed and maybe rounded, or a BigInt). */
function toU64(value) {
  return BigInt.asUintN(64, typeof value === 'bigint' ? value : BigInt(Math.trunc(value)));
}

const orUndefined = (value) => (value === null ? undefined : value);

function describe(thrown) {
  if (thrown instanceof Error) {
    return thrown.message;
  }
  return String(thrown);
}

/** A store's err (`'full'`, thrown bare or as an Error's `payload`) as a StoreError. */
function storeError(thrown) {
  const payload =
    thrown !== null && typeof thrown === 'object' && 'payload' in thrown ? thrown.payload : thrown;
  const code = payload !== null && typeof payload === 'object' && 'tag' in payload ? payload.tag : payload;
  try {
    return new StoreError(code);
  } catch {
    return new StoreError('no-pool');
  }
}

/** Binds the host's imports as the SDK's backend; `store` is undefined in the health world. */
function bindHost(host, probe, store) {
  const hostApi = host.default ?? host;
  const probeApi = probe === undefined ? undefined : (probe.default ?? probe);
  const storeApi = store === undefined ? undefined : (store.default ?? store);
  // An s64 argument as the component takes it: QuickJS a number (exact to
  // 2^53), jco a BigInt. Told once, by what `get` answers.
  let bigints;
  const s64ToHost = (value) => {
    bigints ??= typeof storeApi.get(undefined, '') === 'bigint';
    return bigints ? value : Number(value);
  };
  const noStore = () => {
    throw new StoreError('no-pool');
  };
  const noProbe = () => {
    throw new ProbeError('not-allowed', 'probes are for health checks');
  };
  bindBackend({
    log: (level, message) => hostApi.log(level, message),
    nowNs: () => toU64(hostApi.nowNs()),
    randomU64: () => toU64(hostApi.randomU64()),
    endpointLoad: (id) => orUndefined(hostApi.endpointLoad(id)),
    endpointLoadPair: (first, second) => {
      // The tuple is the plugin's own fresh array: fixed in place, not copied.
      const pair = hostApi.endpointLoadPair(first, second);
      if (pair[0] === null) pair[0] = undefined;
      if (pair[1] === null) pair[1] = undefined;
      return pair;
    },
    requestHeader: (name) => orUndefined(hostApi.requestHeader(name)),
    http:
      probeApi === undefined
        ? noProbe
        : (request) => {
            try {
              return new HttpResponse(probeApi.http(request));
            } catch (thrown) {
              throw probeError(thrown);
            }
          },
    tcpConnect:
      probeApi === undefined
        ? noProbe
        : (timeoutMs) => {
            try {
              return probeApi.tcpConnect(timeoutMs);
            } catch (thrown) {
              throw probeError(thrown);
            }
          },
    storeGet: storeApi === undefined ? () => 0n : (endpoint, name) => BigInt(storeApi.get(endpoint, name)),
    storeAdd:
      storeApi === undefined
        ? noStore
        : (endpoint, name, delta) => {
            try {
              return BigInt(storeApi.add(endpoint, name, s64ToHost(delta)));
            } catch (thrown) {
              throw storeError(thrown);
            }
          },
    storeCompareAndSwap:
      storeApi === undefined
        ? noStore
        : (endpoint, name, expected, value) => {
            try {
              return BigInt(storeApi.compareAndSwap(endpoint, name, s64ToHost(expected), s64ToHost(value)));
            } catch (thrown) {
              throw storeError(thrown);
            }
          },
  });
  return hostApi;
}

/** A probe's err (`{ tag, val }`, thrown bare or as an Error's `payload`) as a ProbeError. */
function probeError(thrown) {
  const payload =
    thrown !== null && typeof thrown === 'object' && 'payload' in thrown ? thrown.payload : thrown;
  if (payload !== null && typeof payload === 'object' && typeof payload.tag === 'string') {
    try {
      return new ProbeError(payload.tag, orUndefined(payload.val));
    } catch {
      // An unknown tag: reported below.
    }
  }
  return new ProbeError('invalid-response', `the host's probe failed: ${describe(thrown)}`);
}

// The component lifts every argument into a fresh object, so the
// conversions below fix it in place rather than copy it: a pick is the hot
// path, and QuickJS pays for each allocation.

function requestFromHost(raw) {
  raw.hash = raw.hash === null || raw.hash === undefined ? undefined : toU64(raw.hash);
  return raw;
}

function endpointFromHost(raw) {
  raw.zone = orUndefined(raw.zone);
  return raw;
}

function failureFromHost(raw) {
  const failure = {
    endpoint: raw.endpoint,
    kind: raw.kind.tag,
    request: requestFromHost(raw.request),
    method: raw.method,
    replayable: raw.replayable,
    elapsedMs: raw.elapsedMs,
  };
  if (raw.kind.tag === 'status') {
    failure.status = raw.kind.val;
  } else if (raw.kind.tag === 'grpc-status') {
    failure.grpcStatus = raw.kind.val;
  }
  return failure;
}

/** A value of the wrong shape returned by the plugin (not thrown by it). */
class BadAnswer extends TypeError {}

const isU32 = (value) => Number.isInteger(value) && value >= 0 && value <= 0xffffffff;
const isU16 = (value) => Number.isInteger(value) && value >= 0 && value <= 0xffff;

function retryToHost(retry, what) {
  if (retry === null || typeof retry !== 'object') {
    throw new BadAnswer(`returned ${what} ${String(retry)}, not { delayMs, sameEndpoint }`);
  }
  const delayMs = retry.delayMs ?? 0;
  if (!isU32(delayMs)) {
    throw new BadAnswer(`returned ${what} whose delayMs is ${delayMs}, not a whole number of ms`);
  }
  return { delayMs, sameEndpoint: Boolean(retry.sameEndpoint) };
}

/** A Decision as the host's `decision` variant; a BadAnswer says what is wrong. */
function decisionToHost(decision) {
  if (decision === null || typeof decision !== 'object') {
    throw new BadAnswer(`returned ${String(decision)}, not a Decision`);
  }
  switch (decision.action) {
    case 'retry':
      return { tag: 'retry', val: retryToHost(decision, 'a retry') };
    case 'eject': {
      if (!isU32(decision.durationMs)) {
        throw new BadAnswer(`returned an ejection whose durationMs is ${decision.durationMs}, not a whole number of ms`);
      }
      const retry = orUndefined(decision.retry);
      return {
        tag: 'eject',
        val: {
          durationMs: decision.durationMs,
          retry: retry === undefined ? undefined : retryToHost(retry, "an ejection's retry"),
        },
      };
    }
    case 'give-up': {
      const status = orUndefined(decision.status);
      if (status !== undefined && !isU16(status)) {
        throw new BadAnswer(`returned a give-up with status ${status}, not an HTTP status`);
      }
      return { tag: 'give-up', val: status };
    }
    default:
      throw new BadAnswer(
        `returned action ${String(decision.action)}, not a Decision (Decision.retry, eject or giveUp)`,
      );
  }
}

/** A Verdict as the host's record; a BadAnswer says what is wrong. */
function verdictToHost(verdict) {
  if (verdict === null || typeof verdict !== 'object') {
    throw new BadAnswer(`returned ${String(verdict)}, not a Verdict`);
  }
  if (!HEALTH.includes(verdict.health)) {
    throw new BadAnswer(`returned health ${String(verdict.health)}, not one of ${HEALTH.join(', ')}`);
  }
  return { health: verdict.health, reason: String(verdict.reason ?? '') };
}

/** Builds the user's plugin for one pool; a throw becomes the string jco maps to the err. */
function construct(Plugin, Base, world, json) {
  if (typeof Plugin !== 'function' || !(Plugin.prototype instanceof Base)) {
    throw `the plugin's default export must be a class that extends ${Base.name} (this is a ${world} plugin), got ${
      typeof Plugin === 'function' ? Plugin.name || 'an anonymous function' : typeof Plugin
    }`;
  }
  try {
    return new Plugin(parseConfig(json));
  } catch (thrown) {
    throw describe(thrown);
  }
}

function report(host, method, thrown, outcome) {
  const what = thrown instanceof BadAnswer ? `${method} ${thrown.message}` : `${method} threw: ${describe(thrown)}`;
  try {
    host.log('error', `${what}; ${outcome}`);
  } catch {
    // Logging must never turn a caught error into a trap.
  }
  return what;
}

export function balancerExports(Plugin, host, store) {
  const hostApi = bindHost(host, undefined, store);
  class PoolBalancer {
    constructor(plugin) {
      this.plugin = plugin;
    }

    static create(config) {
      return new PoolBalancer(construct(Plugin, Balancer, 'balancer', config));
    }

    setEndpoints(endpoints) {
      try {
        this.plugin.setEndpoints(endpoints.map(endpointFromHost));
      } catch (thrown) {
        report(hostApi, 'setEndpoints', thrown, 'the pool keeps what the plugin holds');
      }
    }

    pick(request) {
      let id;
      try {
        id = this.plugin.pick(requestFromHost(request));
      } catch (thrown) {
        report(hostApi, 'pick', thrown, 'the pick is declined');
        return undefined;
      }
      if (id === undefined || id === null) {
        return undefined;
      }
      if (!isU32(id)) {
        report(hostApi, 'pick', new BadAnswer(`returned ${String(id)}, not an endpoint id`), 'the pick is declined');
        return undefined;
      }
      return id;
    }
  }
  return { PoolBalancer };
}

export function healthExports(Plugin, host, probe) {
  const hostApi = bindHost(host, probe);
  class PoolCheck {
    constructor(plugin) {
      this.plugin = plugin;
    }

    static create(config) {
      return new PoolCheck(construct(Plugin, HealthCheck, 'health check', config));
    }

    check(target) {
      try {
        return verdictToHost(this.plugin.check(endpointFromHost(target)));
      } catch (thrown) {
        return { health: 'unknown', reason: report(hostApi, 'check', thrown, 'the verdict is unknown') };
      }
    }
  }
  return { PoolCheck };
}

export function recoveryExports(Plugin, host, store) {
  const hostApi = bindHost(host, undefined, store);
  class PoolRecovery {
    constructor(plugin) {
      this.plugin = plugin;
    }

    static create(config) {
      return new PoolRecovery(construct(Plugin, Recovery, 'recovery', config));
    }

    onFailure(failure) {
      try {
        return decisionToHost(this.plugin.onFailure(failureFromHost(failure)));
      } catch (thrown) {
        report(hostApi, 'onFailure', thrown, 'the request is given up');
        return { tag: 'give-up', val: undefined };
      }
    }
  }
  return { PoolRecovery };
}


export function stateExports(host) {
  const hostApi = host.default ?? host;
  return {
    snapshot(pool) {
      try {
        const state = pool.plugin.snapshot();
        if (!(state instanceof Uint8Array)) {
          throw new BadAnswer(`returned ${String(state)}, not a Uint8Array`);
        }
        return state;
      } catch (thrown) {
        report(hostApi, 'snapshot', thrown, "the pool's state is not carried to the new version");
        return new Uint8Array(0);
      }
    },

    restore(pool, state) {
      try {
        pool.plugin.restore(state);
      } catch (thrown) {
        // The string jco maps to the err: the new version is refused.
        throw describe(thrown);
      }
    },
  };
}
