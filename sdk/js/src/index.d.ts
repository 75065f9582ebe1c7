/**
 * Write Switchyard policy plugins (balancers, health checks and recovery
 * policies) as plain JavaScript, and build them into sandboxed WebAssembly
 * components with `switchyard plugin build`.
 *
 * A plugin's `src/plugin.js` default-exports one subclass of `Balancer`,
 * `HealthCheck` or `Recovery`; its `package.json` names the kind. The same
 * code runs under `node --test`, where `TestHost` from
 * `@switchyard/sdk/testing` stands in for the host.
 *
 * @example
 * // @ts-check
 * import { Balancer } from '@switchyard/sdk';
 *
 * // Sends every request to the first endpoint.
 * export default class First extends Balancer {
 *   pick(_request) {
 *     return this.endpoints[0]?.id;
 *   }
 * }
 * @module
 */

export type { Endpoint, Health, Load, Priority, RequestInfo } from './types.js';
export { HEALTH, PRIORITIES, endpoint, isServing, load, requestInfo } from './types.js';
export { Balancer } from './balancer.js';
export { HealthCheck, Verdict } from './health.js';
export type { Failure, FailureKind, Retry } from './recovery.js';
export { Decision, FAILURE_KINDS, Recovery, isStatus } from './recovery.js';
export { ConfigError, ConfigReader } from './config.js';
export type { LogLevel } from './host.js';
export * as host from './host.js';
export * as probe from './probe.js';
export * as store from './store.js';
export type { HttpRequest, ProbeErrorKind } from './probe.js';
export { HttpResponse, ProbeError } from './probe.js';
