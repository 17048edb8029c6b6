// livevote-load --scenario soak: 300 votes/s for 30 minutes with a few readers.
// Memory of each service: watch process RSS in your own monitoring (the
// Infrastructure dashboard); livevote-load samples it itself on a local stack.
import { vote, readResults, requireInputs, thresholds } from './lib.js';

const duration = `${__ENV.DURATION_SECS || 1800}s`;

export const options = {
  thresholds,
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
      rate: Number(__ENV.READERS || 10),
      timeUnit: '1s',
      duration,
      preAllocatedVUs: 20,
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
