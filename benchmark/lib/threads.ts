// CPU time of this process's threads from /proc (Linux; 10 ms ticks): the JS thread, and the rest
// together (a driver's native threads: Rust's tokio worker, libuv's pool). Null where /proc is not.
import fs from 'node:fs';

export interface ThreadCpu {
  jsMs: number;
  otherMs: number;
}

export function threadCpu(): ThreadCpu | null {
  let tasks: string[];
  try {
    tasks = fs.readdirSync('/proc/self/task');
  } catch {
    return null;
  }
  const out = { jsMs: 0, otherMs: 0 };
  for (const t of tasks) {
    let stat: string;
    try {
      stat = fs.readFileSync(`/proc/self/task/${t}/stat`, 'utf8');
    } catch {
      continue; // a thread that ended meanwhile
    }
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ms = (Number(f[11]) + Number(f[12])) * 10;
    if (Number(t) === process.pid) out.jsMs += ms;
    else out.otherMs += ms;
  }
  return out;
}

export function threadCpuSince(before: ThreadCpu | null): ThreadCpu | undefined {
  const now = threadCpu();
  return before && now ? { jsMs: now.jsMs - before.jsMs, otherMs: now.otherMs - before.otherMs } : undefined;
}
