// livevote-load --scenario results-readers: 300 votes/s for 60 s while 200
// pollers ask for the results once a second each. (k6 has no built-in SSE
// client; livevote-load adds 50 SSE followers.)
import { vote, readResults, requireInputs, thresholds } from './lib.js';

const duration = `${__ENV.DURATION_SECS || 60}s`;

export const options = {
  thresholds: Object.assign({}, thresholds, { 'http_req_duration{name:results}': ['p(99)<250'] }),
  scenarios: {
    votes: {
      executor: 'constant-arrival-rate',
      rate: Number(__ENV.RATE || 300),
      timeUnit: '1s',
      duration,
      preAllocatedVUs: 300,
      maxVUs: 3000,
      exec: 'votes',
    },
    readers: {
      executor: 'constant-arrival-rate',
      rate: Number(__ENV.READERS || 200),
      timeUnit: '1s',
      duration,
      preAllocatedVUs: 200,
      maxVUs: 1000,
      exec: 'readers',
    },
  },
};

export function setup() {
  requireInputs();
}

export function votes() {
  vote();
}

export function readers() {
  readResults();
}
