// Shared by the k6 scenarios, which mirror livevote-load's presets for teams
// that run k6 in their own environment. k6 gives the same open-loop arrival
// model (constant-arrival-rate / ramping-arrival-rate) and latency
// percentiles; it does not take livevote-load's exact verdict: run
// `livevote-load verify` or `livevote reconcile <election>` afterwards.
//
// Inputs (environment):
//   BASE_URL        ingestion, e.g. https://vote.example.com   (default http://127.0.0.1:8080)
//   RESULTS_URL     results service                              (default http://127.0.0.1:8082)
//   ELECTION_ID     an ACTIVE election (livevote elections create ... && livevote elections open <id>)
//   CANDIDATE_IDS   its candidate ids, comma-separated
//   TOKENS          file with one viewer token per line, at least one per iteration:
//                   livevote-load tokens --count N --out tokens.txt
import http from 'k6/http';
import { check } from 'k6';
import { SharedArray } from 'k6/data';
import { Counter } from 'k6/metrics';
import exec from 'k6/execution';

export const BASE_URL = __ENV.BASE_URL || 'http://127.0.0.1:8080';
export const RESULTS_URL = __ENV.RESULTS_URL || 'http://127.0.0.1:8082';
const ELECTION_ID = __ENV.ELECTION_ID;
const CANDIDATES = (__ENV.CANDIDATE_IDS || '').split(',').filter((c) => c.length > 0);

const tokens = new SharedArray('viewer tokens', () =>
  open(__ENV.TOKENS || 'tokens.txt')
    .split('\n')
    .map((t) => t.trim())
    .filter((t) => t.length > 0 && !t.startsWith('livevote-load')),
);

export const accepted = new Counter('votes_accepted');
export const duplicates = new Counter('votes_duplicate');
export const shed = new Counter('votes_shed');

export function requireInputs() {
  if (!ELECTION_ID || CANDIDATES.length === 0) {
    throw new Error('set ELECTION_ID and CANDIDATE_IDS (see loadtests/k6/lib.js)');
  }
  if (tokens.length === 0) {
    throw new Error('no tokens: livevote-load tokens --count N --out tokens.txt');
  }
}

// Thresholds every scenario shares: the accept p99 target and no server errors beyond shedding.
export const thresholds = {
  'http_req_duration{name:vote}': ['p(99)<150'],
  'checks{name:vote}': ['rate>0.99'],
};

// A viewer whose first vote was an earlier iteration (iterations whose
// n % 100 < repeatPercent are repeats and cast no first vote; iteration 0 always votes first).
function earlierFirstVoter(n, repeatPercent) {
  let v = (n * 7919 + 13) % Math.min(n, tokens.length);
  if (v % 100 < repeatPercent) v += repeatPercent - (v % 100);
  return v < n ? v : 0;
}

// One attempt: the n-th iteration votes as viewer n (first vote), and a share
// of iterations re-use an earlier viewer (expected 409 DUPLICATE_VOTE).
export function vote(repeatPercent = 5) {
  const n = exec.scenario.iterationInTest;
  const repeat = n > 0 && n % 100 < repeatPercent;
  const viewer = repeat ? earlierFirstVoter(n, repeatPercent) : n % tokens.length;
  const candidate = CANDIDATES[(viewer + (repeat ? 1 : 0)) % CANDIDATES.length];
  const res = http.post(
    `${BASE_URL}/api/v1/votes`,
    JSON.stringify({ electionId: ELECTION_ID, candidateId: candidate }),
    {
      headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${tokens[viewer]}` },
      tags: { name: 'vote' },
    },
  );
  if (res.status === 202) accepted.add(1);
  if (res.status === 409) duplicates.add(1);
  if (res.status === 503 || res.status === 429) shed.add(1);
  check(
    res,
    { 'vote answered as expected': (r) => (repeat ? r.status === 409 : r.status === 202) || r.status === 503 },
    { name: 'vote' },
  );
}

export function readResults() {
  const res = http.get(`${RESULTS_URL}/api/v1/results/${ELECTION_ID}`, { tags: { name: 'results' } });
  check(res, { 'results 200': (r) => r.status === 200 || r.status === 304 }, { name: 'results' });
}
