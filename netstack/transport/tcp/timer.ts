// A re-armable timer on the stack's Clock, after gVisor's tcp.timer: re-arming for a later deadline
// keeps the scheduled callback and lets it reschedule itself when it fires early, so the per-ACK
// "restart the RTO timer" costs no allocation.
import type { Clock, TimerHandle } from '../../tcpip.js';

export class Timer {
  private handle: TimerHandle | null = null;
  private firesAt = 0;
  private deadline = 0;
  private isArmed = false;
  private readonly onExpiry: () => void;

  constructor(
    private readonly clock: Clock,
    callback: () => void,
  ) {
    this.onExpiry = callback;
    this.fire = this.fire.bind(this);
  }

  get armed(): boolean {
    return this.isArmed;
  }

  /** Milliseconds until expiry (0 when due or disarmed). */
  remaining(): number {
    return this.isArmed ? Math.max(0, this.deadline - this.clock.now()) : 0;
  }

  arm(ms: number): void {
    this.deadline = this.clock.now() + ms;
    this.isArmed = true;
    if (this.handle && this.firesAt <= this.deadline) return;
    this.schedule();
  }

  /** Arms only when not armed already. */
  armIfIdle(ms: number): void {
    if (!this.isArmed) this.arm(ms);
  }

  disarm(): void {
    this.isArmed = false;
  }

  /** Disarms and releases the clock's callback (the owner is going away). */
  stop(): void {
    this.isArmed = false;
    this.handle?.cancel();
    this.handle = null;
  }

  private schedule(): void {
    this.handle?.cancel();
    this.firesAt = this.deadline;
    this.handle = this.clock.setTimeout(this.fire, this.deadline - this.clock.now());
  }

  private fire(): void {
    this.handle = null;
    if (!this.isArmed) return;
    if (this.clock.now() < this.deadline) {
      this.schedule();
      return;
    }
    this.isArmed = false;
    this.onExpiry();
  }
}
