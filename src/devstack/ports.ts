/**
 * Ports for the local stand-ups: is a port free, and does the process we started own the socket listening on
 * it? The second question is what keeps the demo from talking to somebody else's server: a launcher that
 * failed to bind while another process answers on the same port looks healthy from the outside.
 *
 * Ownership is read from Linux's /proc (the listening socket's inode in /proc/net/tcp{,6}, found among the
 * process's file descriptors). Where /proc is missing the answer is `unknown`, and callers fall back to "the
 * port was free before we started and our process is still alive".
 */
import { createServer } from 'node:net';
import { existsSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';

/** True when nothing listens on host:port (we could bind it ourselves, then let go). */
export function portFree(port: number, host = '127.0.0.1'): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.unref();
    srv.once('error', () => resolve(false));
    srv.listen({ port, host, exclusive: true }, () => srv.close(() => resolve(true)));
  });
}

/** Inodes of the sockets listening on `port` (any local address), from /proc/net/tcp and tcp6. */
function listeningInodes(port: number): Set<string> {
  const inodes = new Set<string>();
  const hexPort = port.toString(16).toUpperCase().padStart(4, '0');
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    if (!existsSync(file)) continue;
    for (const line of readFileSync(file, 'utf8').split('\n').slice(1)) {
      const cols = line.trim().split(/\s+/);
      // local_address is HEXADDR:HEXPORT; st 0A is LISTEN; the inode is column 10.
      if (cols.length > 9 && cols[1]?.endsWith(`:${hexPort}`) && cols[3] === '0A') inodes.add(cols[9]!);
    }
  }
  return inodes;
}

/**
 * Whether process `pid` holds a socket listening on `port`: `yes`, `no` (someone else listens, or nobody),
 * or `unknown` where /proc cannot tell (not Linux).
 */
export function ownsPort(pid: number, port: number): 'yes' | 'no' | 'unknown' {
  if (!existsSync('/proc/net/tcp') || !existsSync(`/proc/${pid}`)) {
    return existsSync('/proc/net/tcp') ? 'no' : 'unknown';
  }
  const inodes = listeningInodes(port);
  if (inodes.size === 0) return 'no';
  let fds: string[];
  try {
    fds = readdirSync(`/proc/${pid}/fd`);
  } catch {
    return 'unknown'; // another user's process: we cannot look, so we cannot say
  }
  for (const fd of fds) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (m && inodes.has(m[1]!)) return 'yes';
    } catch {
      // the descriptor closed while we looked
    }
  }
  return 'no';
}

/** The error for a port somebody else holds, naming the variable that chooses it. */
export class PortTakenError extends Error {
  constructor(
    readonly port: number,
    what: string,
    variable: string,
  ) {
    super(
      `port ${port} (${variable}) is already in use by another process, so ${what} cannot listen there; stop that process or set ${variable} to a free port`,
    );
    this.name = 'PortTakenError';
  }
}
