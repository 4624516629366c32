/**
 * The kill trials' counting (see test/kill-trials.ts) on made-up logs: which duplicate effects a
 * kill explains and which answers were lost. The trials themselves: kill-trials.integration.test.ts.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { analyseKillTrial, type Answer, type KillTrialLog, type ServerEvents } from './test/kill-trials.js';

describe('kill trials: the counting', () => {
  const options = { adapter: 'node', store: 'redis', seed: 1, clients: 1 } as const;
  const ok = (effect: number, run: string, answeredBy = run): Answer => ({ status: 201, body: { key: 'k', run, effect }, run: answeredBy });
  const events = (stored: Record<string, string[]>): Map<string, ServerEvents> => new Map(['0', '1', '2'].map((run) => [run, {
    effects: new Map(), stored: new Map((stored[run] ?? []).map((key) => [key, 0])),
  }]));
  const log = (over: Partial<KillTrialLog>): KillTrialLog => ({
    rows: [], answers: new Map(), events: events({}), kills: [{ run: '0', point: 'in-handler', inFlight: 1 }], finalRun: '1', requests: 0, connectionErrors: 0, retryLater: 0, ...over,
  });

  test('a kill between the effect and the completion explains one duplicate, and nothing is lost', () => {
    const r = analyseKillTrial(options, log({
      rows: [{ id: 1, key: 'k', run: '0' }, { id: 2, key: 'k', run: '1' }],
      answers: new Map([['k', [ok(2, '1'), ok(2, '1', '2')]]]),
      events: events({ 1: ['k'] }),
    }));
    assert.equal(r.duplicateEffects, 1);
    assert.deepEqual(r.unexplainedDuplicates, []);
    assert.equal(r.keysInWindowAtKills, 1);
    assert.deepEqual(r.lost, []);
  });

  test('a 2xx contradicted later is lost; a duplicate after a stored completion is unexplained', () => {
    const r = analyseKillTrial(options, log({
      rows: [{ id: 1, key: 'k', run: '0' }, { id: 2, key: 'k', run: '1' }],
      answers: new Map([['k', [ok(1, '0'), ok(2, '1')]]]),
      events: events({ 0: ['k'], 1: ['k'] }),
    }));
    assert.equal(r.lost.length, 1);
    assert.equal(r.unexplainedDuplicates.length, 1);
    assert.equal(r.forgottenAcrossRestart, 1);
    assert.equal(r.checksAcrossRestart, 1);
  });

  test('a 2xx followed by another run of the effect is lost even if no later answer differs; one run answering two ways is flagged', () => {
    const ranAgain = analyseKillTrial(options, log({
      rows: [{ id: 1, key: 'k', run: '0' }, { id: 2, key: 'k', run: '1' }],
      answers: new Map([['k', [ok(1, '0')]]]),
    }));
    assert.match(ranAgain.lost[0] ?? '', /ran again/);
    const twoWays = analyseKillTrial(options, log({
      rows: [{ id: 1, key: 'k', run: '0' }, { id: 2, key: 'k', run: '0' }],
      answers: new Map([['k', [ok(1, '0'), ok(2, '0')]]]),
    }));
    assert.equal(twoWays.sameRunMismatches.length, 1);
    assert.equal(twoWays.sameRunDuplicates.length, 1);
  });
});
