/**
 * A throwaway PostgreSQL primary and streaming replica for replica-routing tests: `initdb`,
 * `pg_basebackup -R` and `pg_ctl` on free ports in a temp dir, stopped and removed by `stop()`.
 * The shared server on 5432 is never touched. Set PG_BIN to choose the binaries' directory
 * (default: the newest /usr/lib/postgresql/<version>/bin, else whatever is on PATH).
 */
import { execFile, execFileSync } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { freePort } from '../../../test/support/private-redis.js';

const run = promisify(execFile);

function binDir(): string {
  if (process.env.PG_BIN) return process.env.PG_BIN;
  const root = '/usr/lib/postgresql';
  if (!existsSync(root)) return '';
  const versions = readdirSync(root).filter((v) => /^\d+$/.test(v)).sort((a, b) => Number(b) - Number(a));
  return versions.length > 0 ? join(root, versions[0]!, 'bin') : '';
}

/** PostgreSQL refuses to run as root: as root, the servers run as the `postgres` user. */
const asRoot = userInfo().uid === 0;

export class PrivateReplication {
  readonly dir: string;
  primaryPort = 0;
  replicaPort = 0;
  readonly #bin = binDir();
  #started: string[] = [];

  constructor() {
    this.dir = mkdtempSync(join(tmpdir(), 'bulwark-pg-'));
    if (asRoot) chownSync(this.dir, idOf('-u'), idOf('-g'));
  }

  async #tool(name: string, args: string[]): Promise<{ stdout: string }> {
    const command = this.#bin === '' ? name : join(this.#bin, name);
    try {
      return await (asRoot ? run('runuser', ['-u', 'postgres', '--', command, ...args]) : run(command, args));
    } catch (error) {
      const { stderr } = error as { stderr?: string };
      throw new Error(`${name} failed (the PostgreSQL server binaries are required; set PG_BIN to their directory): ${stderr || (error as Error).message}`, { cause: error });
    }
  }

  async start(): Promise<void> {
    this.primaryPort = await freePort();
    this.replicaPort = await freePort();
    const primary = join(this.dir, 'primary');
    const replica = join(this.dir, 'replica');
    await this.#tool('initdb', ['-D', primary, '-U', 'postgres', '-A', 'trust', '--no-sync', '--no-instructions']);
    await this.#ctlStart(primary, this.primaryPort, '-c wal_level=replica -c max_wal_senders=4 -c fsync=off -c synchronous_commit=on');
    await this.#tool('pg_basebackup', ['-h', '127.0.0.1', '-p', String(this.primaryPort), '-U', 'postgres', '-D', replica, '-R', '-X', 'stream', '-c', 'fast']);
    await this.#ctlStart(replica, this.replicaPort, '-c hot_standby=on -c fsync=off');
  }

  async #ctlStart(data: string, port: number, settings: string): Promise<void> {
    const options = `-p ${port} -k ${this.dir} -c listen_addresses=127.0.0.1 ${settings}`;
    await this.#tool('pg_ctl', ['-D', data, '-o', options, '-l', `${data}.log`, '-w', '-t', '60', 'start']);
    this.#started.push(data);
  }

  url(port: number): string {
    return `postgres://postgres@127.0.0.1:${port}/postgres`;
  }

  /** Stops the primary at once, as a crash would. */
  async stopPrimary(): Promise<void> {
    await this.#stop(join(this.dir, 'primary'));
  }

  async #stop(data: string): Promise<void> {
    if (!this.#started.includes(data)) return;
    this.#started = this.#started.filter((d) => d !== data);
    await this.#tool('pg_ctl', ['-D', data, '-m', 'immediate', '-w', 'stop']).catch(() => {});
  }

  /** Stops both servers and removes their data. */
  async stop(): Promise<void> {
    for (const data of [...this.#started].reverse()) await this.#stop(data);
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** The `postgres` user's uid or gid. */
function idOf(flag: '-u' | '-g'): number {
  return Number(execFileSync('id', [flag, 'postgres']).toString().trim());
}
