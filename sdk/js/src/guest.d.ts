/**
 * The glue `switchyard plugin build` binds to the host in the entry module
 * it writes. It converts between the component's values and the SDK's
 * (`null` and `undefined`, u64 numbers and BigInts, variants and plain
 * objects), and catches a plugin's exceptions so that they never trap the
 * instance: a throwing `pick` declines, a throwing `check` gives an
 * `'unknown'` verdict with the error's text, a throwing `onFailure` gives up;
 * each is logged through the host at `error`. A throwing constructor
 * refuses the pool's config with its message.
 *
 * Plugin authors do not import it; the build writes:
 *
 * @example
 * import * as host from 'switchyard:plugin/host@0.2.1';
 * import * as store from 'switchyard:plugin/store@0.2.1';
 * import { balancerExports, stateExports } from '@switchyard/sdk/guest';
 * import Plugin from '../src/plugin.js';
 * export const balancer = balancerExports(Plugin, host, store);
 * export const balancerState = stateExports(host);
 * @module
 */

import type { Balancer } from './balancer.js';
import type { HealthCheck } from './health.js';
import type { Recovery } from './recovery.js';

/**
 * The `switchyard:plugin/host` import module, as jco gives it (named
 * exports or a default object).
 *
 * @example
 * import * as host from 'switchyard:plugin/host@0.2.1';
 */
export type HostImports = Record<string, unknown>;

/**
 * The `switchyard:plugin/probe` import module, as jco gives it.
 *
 * @example
 * import * as probe from 'switchyard:plugin/probe@0.2.1';
 */
export type ProbeImports = Record<string, unknown>;

/**
 * The `switchyard:plugin/store` import module, as jco gives it (balancers
 * and recovery policies).
 *
 * @example
 * import * as store from 'switchyard:plugin/store@0.2.1';
 */
export type StoreImports = Record<string, unknown>;

/**
 * The `balancer` export of a balancer-plugin component: `{ PoolBalancer }`.
 *
 * @example
 * import * as host from 'switchyard:plugin/host@0.2.1';
 * import * as store from 'switchyard:plugin/store@0.2.1';
 * import { balancerExports } from '@switchyard/sdk/guest';
 * import Plugin from '../src/plugin.js';
 * export const balancer = balancerExports(Plugin, host, store);
 */
export declare function balancerExports(
  Plugin: new (config: object) => Balancer,
  host: HostImports,
  store?: StoreImports,
): { PoolBalancer: unknown };

/**
 * The `healthCheck` export of a health-plugin component: `{ PoolCheck }`.
 *
 * @example
 * import * as host from 'switchyard:plugin/host@0.2.1';
 * import * as probe from 'switchyard:plugin/probe@0.2.1';
 * import { healthExports } from '@switchyard/sdk/guest';
 * import Plugin from '../src/plugin.js';
 * export const healthCheck = healthExports(Plugin, host, probe);
 */
export declare function healthExports(
  Plugin: new (config: object) => HealthCheck,
  host: HostImports,
  probe: ProbeImports,
): { PoolCheck: unknown };

/**
 * The `recovery` export of a recovery-plugin component: `{ PoolRecovery }`.
 *
 * @example
 * import * as host from 'switchyard:plugin/host@0.2.1';
 * import * as store from 'switchyard:plugin/store@0.2.1';
 * import { recoveryExports } from '@switchyard/sdk/guest';
 * import Plugin from '../src/plugin.js';
 * export const recovery = recoveryExports(Plugin, host, store);
 */
export declare function recoveryExports(
  Plugin: new (config: object) => Recovery,
  host: HostImports,
  store?: StoreImports,
): { PoolRecovery: unknown };

/**
 * The `balancerState` or `recoveryState` export: `snapshot` and `restore`
 * of a pool's resource (made by `balancerExports` or `recoveryExports`),
 * calling the plugin object's own `snapshot` and `restore`. A throwing
 * `snapshot` carries nothing and is logged; a throwing `restore` refuses
 * the new version with its message.
 *
 * @example
 * import * as host from 'switchyard:plugin/host@0.2.1';
 * import { stateExports } from '@switchyard/sdk/guest';
 * export const balancerState = stateExports(host);
 */
export declare function stateExports(host: HostImports): {
  snapshot(pool: unknown): Uint8Array;
  restore(pool: unknown, state: Uint8Array): void;
};
