/**
 * Reading a plugin's config: the pool's config table, parsed from the JSON
 * the host passes, as the constructor's argument.
 * @module
 */

/**
 * A config the plugin refuses, naming the key at fault:
 * ``config key `window`: must be from 1 to 64, got 0``. Thrown from the
 * constructor, its message is shown to the operator.
 *
 * @example
 * import { ConfigError } from '@switchyard/sdk';
 * const error = new ConfigError('path', 'must start with `/`');
 * console.assert(error.message === 'config key `path`: must start with `/`');
 */
export declare class ConfigError extends Error {
  /**
   * An error about `key` (or, when `undefined`, the config as a whole).
   *
   * @example
   * import { ConfigError } from '@switchyard/sdk';
   * throw new ConfigError('retry_on[1]', 'unknown failure `timeout`');
   */
  constructor(key: string | undefined, problem: string);
  /** The key at fault; `undefined` for the config as a whole. */
  key: string | undefined;
}

/**
 * Reads typed keys from a config, with defaults and ranges, each problem a
 * `ConfigError` naming its key; `finish()` refuses keys nobody read, so a
 * mistyped key is an error rather than silently ignored.
 *
 * @example
 * import { ConfigReader } from '@switchyard/sdk';
 * const read = new ConfigReader({ window: 4 });
 * const window = read.integer('window', { default: 8, min: 1, max: 64 });
 * const sticky = read.boolean('sticky', { default: false });
 * read.finish();
 * console.assert(window === 4 && sticky === false);
 */
export declare class ConfigReader {
  /**
   * A reader of `config`; throws a ConfigError unless it is a table (a
   * plain object).
   *
   * @example
   * import { ConfigReader } from '@switchyard/sdk';
   * const read = new ConfigReader({ retries: 2 });
   */
  constructor(config: unknown);

  /**
   * An integer from `min` (default 0) to `max` (default 2^32 - 1), or
   * `default` when the key is absent.
   *
   * @example
   * import { ConfigReader } from '@switchyard/sdk';
   * new ConfigReader({}).integer('retries', { default: 1, max: 5 }); // 1
   */
  integer(key: string, options: { default: number; min?: number; max?: number }): number;

  /**
   * `true` or `false`, or `default` when the key is absent.
   *
   * @example
   * import { ConfigReader } from '@switchyard/sdk';
   * new ConfigReader({ same_endpoint: true }).boolean('same_endpoint', { default: false }); // true
   */
  boolean(key: string, options: { default: boolean }): boolean;

  /**
   * A string, or `default` when the key is absent.
   *
   * @example
   * import { ConfigReader } from '@switchyard/sdk';
   * new ConfigReader({}).string('path', { default: '/healthz' }); // '/healthz'
   */
  string(key: string, options: { default: string }): string;

  /**
   * An array whose items the caller checks (throw
   * `new ConfigError(`${key}[${i}]`, ...)` for a bad one), or `default`.
   *
   * @example
   * import { ConfigReader } from '@switchyard/sdk';
   * new ConfigReader({ retry_on: ['5xx'] }).array('retry_on', { default: [] }); // ['5xx']
   */
  array<T = unknown>(key: string, options: { default: T[] }): unknown[] | T[];

  /**
   * Throws a ConfigError for the first key no reader method asked for.
   *
   * @example
   * import { ConfigReader } from '@switchyard/sdk';
   * const read = new ConfigReader({ windw: 2 });
   * read.integer('window', { default: 8 });
   * read.finish(); // throws: config key `windw`: unknown key; expected `window`
   */
  finish(): void;
}
