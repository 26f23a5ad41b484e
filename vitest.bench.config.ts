import { defineConfig } from 'vitest/config'

// The benchmark's smoke run (test/bench): after the rest of the suite and alone, since it loads both
// cores for a minute or two and would slow the suite's own servers meanwhile.
export default defineConfig({
  test: {
    include: ['test/bench/**/*.test.ts'],
    testTimeout: 420_000,
    pool: 'forks',
  },
})
