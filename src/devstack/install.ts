/**
 * The programs the local stand-ups need (redis-server; Java and Maven for the HAPI launcher), installed when
 * they are missing and we can: on Debian (or a derivative), as root, with apt-get, saying what runs. Anywhere
 * else the caller gets a one-line instruction instead. The decision is a pure function (`installPlan`), so it
 * is tested without touching the machine.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';

export interface Tool {
  /** What the user knows it as. */
  readonly name: string;
  /** Commands that must all be on PATH. */
  readonly commands: readonly string[];
  /** Debian packages, first choice first per slot (e.g. Java 17, else the distribution's default JDK). */
  readonly packages: readonly (readonly string[])[];
  /** The instruction when we cannot install it ourselves. */
  readonly manual: string;
}

export const REDIS: Tool = {
  name: 'redis-server',
  commands: ['redis-server'],
  packages: [['redis-server']],
  manual:
    'install redis-server (Debian/Ubuntu: apt-get install redis-server; macOS: brew install redis) and re-run',
};

/** The HAPI launcher is compiled (a JDK, not only a JRE) with Maven; Java 17 or later. */
export const JAVA_MAVEN: Tool = {
  name: 'Java 17+ and Maven',
  commands: ['java', 'javac', 'mvn'],
  packages: [['openjdk-17-jdk-headless', 'openjdk-21-jdk-headless', 'default-jdk-headless'], ['maven']],
  manual:
    'install a Java 17+ JDK and Maven (Debian/Ubuntu: apt-get install openjdk-17-jdk-headless maven; macOS: brew install openjdk@17 maven) and re-run',
};

export interface Machine {
  readonly platform: NodeJS.Platform;
  readonly debian: boolean;
  readonly root: boolean;
  readonly aptGet: boolean;
}

export type Plan =
  | { readonly kind: 'present' }
  | { readonly kind: 'install'; readonly missing: readonly string[] }
  | { readonly kind: 'manual'; readonly message: string };

/** What to do about `tool` when `missing` of its commands are not on PATH. */
export function installPlan(tool: Tool, missing: readonly string[], m: Machine): Plan {
  if (missing.length === 0) return { kind: 'present' };
  const why =
    m.platform !== 'linux' || !m.debian || !m.aptGet
      ? 'this is not a Debian system with apt-get'
      : !m.root
        ? 'installing needs root (run as root, or with sudo)'
        : undefined;
  if (why)
    return {
      kind: 'manual',
      message: `${tool.name} is missing (${missing.join(', ')} not on PATH) and ${why}: ${tool.manual}`,
    };
  return { kind: 'install', missing };
}

export function onPath(command: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${command} >/dev/null 2>&1`]).status === 0;
}

export function thisMachine(): Machine {
  return {
    platform: process.platform,
    debian: existsSync('/etc/debian_version'),
    root: typeof process.getuid === 'function' && process.getuid() === 0,
    aptGet: onPath('apt-get'),
  };
}

/** The first package of each slot that apt knows (e.g. no openjdk-17 on a newer Debian: take 21). */
function choosePackages(tool: Tool): string[] {
  return tool.packages.map((slot) => {
    for (const pkg of slot) {
      const r = spawnSync('apt-cache', ['show', '--no-all-versions', pkg], { stdio: 'ignore' });
      if (r.status === 0) return pkg;
    }
    return slot[0]!;
  });
}

export class MissingToolError extends Error {}

/**
 * Makes sure `tool` is on PATH: nothing when present; installs it with apt-get when it may (reporting each step
 * through `say`); otherwise throws a MissingToolError with the one-line instruction.
 */
export function ensureTool(tool: Tool, say: (msg: string) => void, machine = thisMachine()): void {
  const missing = tool.commands.filter((c) => !onPath(c));
  const plan = installPlan(tool, missing, machine);
  if (plan.kind === 'present') return;
  if (plan.kind === 'manual') throw new MissingToolError(plan.message);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  say(
    `${tool.name} is missing (${missing.join(', ')}); installing it with apt-get (Debian, running as root)…`,
  );
  say('running: apt-get update');
  spawnSync('apt-get', ['update', '-qq'], { stdio: ['ignore', 'ignore', 'inherit'], env });
  const pkgs = choosePackages(tool);
  say(`running: apt-get install -y --no-install-recommends ${pkgs.join(' ')}`);
  const r = spawnSync('apt-get', ['install', '-y', '-qq', '--no-install-recommends', ...pkgs], {
    stdio: ['ignore', 'ignore', 'inherit'],
    env,
  });
  const still = tool.commands.filter((c) => !onPath(c));
  if (r.status !== 0 || still.length)
    throw new MissingToolError(
      `installing ${pkgs.join(' ')} with apt-get failed (exit ${r.status ?? r.signal}); ${tool.manual}`,
    );
  say(`${tool.name} installed`);
}
