// Commands into a running guest: the guest script ends with `rig_command_loop` (guest/lib.sh),
// the host sends shell snippets one at a time through the share and gets their output and exit
// status back. One boot then serves a whole sequence of steps driven from the host (servers
// started and stopped between them), instead of one boot per step.
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import type { GuestHandle } from './rig.js';
import { waitForFile } from './rig.js';

export interface CommandResult {
  rc: number;
  out: string;
}

export class GuestShell {
  readonly #g: GuestHandle;
  #next = 1;

  constructor(g: GuestHandle) {
    this.#g = g;
  }

  /** Run `script` in the guest (a subshell with lib.sh loaded); resolves with its status and output. */
  async run(script: string, timeoutMs = 60_000): Promise<CommandResult> {
    const n = this.#next++;
    // Written whole under another name first: the guest must never see a half-written script.
    writeFileSync(this.#g.path(`cmd-${n}.tmp`), `${script}\n`);
    renameSync(this.#g.path(`cmd-${n}.tmp`), this.#g.path(`cmd-${n}.sh`));
    await waitForFile(this.#g.path(`cmd-${n}.rc`), timeoutMs, this.#g.done, `guest command ${n}`);
    const out = existsSync(this.#g.path(`cmd-${n}.out`)) ? readFileSync(this.#g.path(`cmd-${n}.out`), 'utf8') : '';
    return { rc: Number(readFileSync(this.#g.path(`cmd-${n}.rc`), 'utf8').trim()), out };
  }

  /** Like run(), but throws (with the output) unless the status is 0; returns the output. */
  async ok(script: string, timeoutMs = 60_000): Promise<string> {
    const r = await this.run(script, timeoutMs);
    if (r.rc !== 0) throw new Error(`guest command failed (rc ${r.rc}):\n${script}\n--- output ---\n${r.out}`);
    return r.out;
  }

  /** End the command loop (the guest script goes on after it, then powers off). */
  exit(): void {
    writeFileSync(this.#g.path(`cmd-${this.#next}.exit`), '');
  }
}
