// How long the event loop was blocked while a workload ran: the longest gap between ticks of a
// 1 ms interval (minus the interval), and how busy the loop was (event-loop utilisation).
import { performance, type EventLoopUtilization } from 'node:perf_hooks';

export interface LoopStats {
  /** Longest stretch the event loop could not run a 1 ms timer, in ms. */
  maxBlockMs: number;
  /** Fraction of wall time the main thread was busy (0..1). */
  utilization: number;
}

export class LoopMonitor {
  private last = 0;
  private maxGap = 0;
  private timer: NodeJS.Timeout | null = null;
  private elu: EventLoopUtilization | null = null;

  start(): void {
    this.last = performance.now();
    this.maxGap = 0;
    this.elu = performance.eventLoopUtilization();
    this.timer = setInterval(() => {
      const now = performance.now();
      if (now - this.last > this.maxGap) this.maxGap = now - this.last;
      this.last = now;
    }, 1);
  }

  stop(): LoopStats {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    // The stretch since the last tick counts too: a block may run to the very end.
    const tail = performance.now() - this.last;
    const gap = Math.max(this.maxGap, tail);
    const elu = performance.eventLoopUtilization(this.elu ?? undefined);
    return { maxBlockMs: Math.max(0, gap - 1), utilization: elu.utilization };
  }
}
