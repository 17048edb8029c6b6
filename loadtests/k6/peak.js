// livevote-load --scenario peak: the highest rate one machine sustained with
// p99 < 150 ms (README); raise RATE for a bigger environment.
import { vote, requireInputs, thresholds } from './lib.js';

export const options = {
  thresholds,
  scenarios: {
    votes: {
      executor: 'constant-arrival-rate',
      rate: Number(__ENV.RATE || 6000),
      timeUnit: '1s',
      duration: `${__ENV.DURATION_SECS || 60}s`,
      preAllocatedVUs: 1000,
      maxVUs: 10000,
    },
  },
};

export function setup() {
  requireInputs();
}

export default function () {
  vote();
}
