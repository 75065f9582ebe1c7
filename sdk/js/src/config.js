// Reading a plugin's config: the pool's JSON, parsed, given to the
// constructor. Declarations and examples: config.d.ts.

export class ConfigError extends Error {
  constructor(key, problem) {
    super(key === undefined ? `config: ${problem}` : `config key \`${key}\`: ${problem}`);
    this.name = 'ConfigError';
    this.key = key;
  }
}

/** Parses the host's JSON into an object, or throws the operator's message. */
export function parseConfig(json) {
  const trimmed = json.trim();
  if (trimmed === '') {
    return {};
  }
  if (!trimmed.startsWith('{')) {
    throw new Error(`config must be a table (a JSON object), got \`${json.slice(0, 40)}\``);
  }
  try {
    return JSON.parse(json);
  } catch (cause) {
    throw new Error(`config is not JSON: ${cause instanceof Error ? cause.message : cause}`);
  }
}

const show = (value) => (typeof value === 'string' ? JSON.stringify(value) : String(value));

function kindOf(value) {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'object') return 'a table';
  return `${typeof value} ${show(value)}`;
}

export class ConfigReader {
  constructor(config) {
    if (config === null || typeof config !== 'object' || Array.isArray(config)) {
      throw new ConfigError(undefined, `must be a table (a JSON object), got ${kindOf(config)}`);
    }
    this.config = config;
    this.read = new Set();
  }

  take(key) {
    this.read.add(key);
    return Object.hasOwn(this.config, key) ? this.config[key] : undefined;
  }

  integer(key, { default: fallback, min = 0, max = 2 ** 32 - 1 }) {
    const value = this.take(key);
    if (value === undefined) {
      return fallback;
    }
    if (!Number.isInteger(value)) {
      throw new ConfigError(key, `expected an integer, got ${kindOf(value)}`);
    }
    if (value < min || value > max) {
      throw new ConfigError(key, `must be from ${min} to ${max}, got ${value}`);
    }
    return value;
  }

  boolean(key, { default: fallback }) {
    const value = this.take(key);
    if (value === undefined) {
      return fallback;
    }
    if (typeof value !== 'boolean') {
      throw new ConfigError(key, `expected true or false, got ${kindOf(value)}`);
    }
    return value;
  }

  string(key, { default: fallback }) {
    const value = this.take(key);
    if (value === undefined) {
      return fallback;
    }
    if (typeof value !== 'string') {
      throw new ConfigError(key, `expected a string, got ${kindOf(value)}`);
    }
    return value;
  }

  array(key, { default: fallback }) {
    const value = this.take(key);
    if (value === undefined) {
      return fallback;
    }
    if (!Array.isArray(value)) {
      throw new ConfigError(key, `expected an array, got ${kindOf(value)}`);
    }
    return value;
  }

  finish() {
    const known = [...this.read];
    for (const key of Object.keys(this.config)) {
      if (!this.read.has(key)) {
        const expected = known.length === 0 ? 'this plugin takes no keys' : `expected ${known.map((k) => `\`${k}\``).join(', ')}`;
        throw new ConfigError(key, `unknown key; ${expected}`);
      }
    }
  }
}
