// @switchyard/sdk: write Switchyard policy plugins as plain JavaScript.
// Layout: types.js (shared values), balancer.js, health.js, recovery.js
// (one base class per world), config.js (reading the pool's config),
// host.js, store.js and probe.js (what the host offers), testing.js (the stand-in
// host for node --test), guest.js (the glue a build binds to the host).

export { HEALTH, PRIORITIES, isServing, endpoint, load, requestInfo } from './types.js';
export { Balancer } from './balancer.js';
export { HealthCheck, Verdict } from './health.js';
export { Recovery, Decision, FAILURE_KINDS, isStatus } from './recovery.js';
export { ConfigError, ConfigReader } from './config.js';
export * as host from './host.js';
export * as probe from './probe.js';
export * as store from './store.js';
export { ProbeError, HttpResponse } from './probe.js';
