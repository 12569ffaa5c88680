/*
 * kumi C example: allreduce (out of place and in place) and broadcast of floats.
 *
 * Build it against an installed kumi with pkg-config:
 *     cc allreduce.c $(pkg-config --cflags --libs kumi) -o allreduce
 * and run it on 4 local ranks:
 *     kumirun -np 4 -- ./allreduce
 *
 * kumirun sets KUMI_RANK, KUMI_WORLD_SIZE and KUMI_STORE for every rank; kumiCommInitFromEnv
 * reads them. The program exits non-zero if a call fails or a result is wrong.
 */
#include <kumi/kumi.h>

#include <stdio.h>
#include <stdlib.h>

#define COUNT 1024

/* Every kumi call returns a kumiResult_t; on failure kumiGetLastError() says what went wrong. */
#define CHECK(call)                                                                         \
  do {                                                                                      \
    kumiResult_t res_ = (call);                                                             \
    if (res_ != kumiSuccess) {                                                              \
      fprintf(stderr, "%s failed: %s: %s\n", #call, kumiGetErrorString(res_),               \
              kumiGetLastError());                                                          \
      exit(1);                                                                              \
    }                                                                                       \
  } while (0)

int main(void) {
  /* 1. Join the job: collective over all ranks, returns once everybody has arrived. */
  kumiComm_t comm = NULL;
  CHECK(kumiCommInitFromEnv(&comm));
  int rank = 0, size = 0;
  CHECK(kumiCommRank(comm, &rank));
  CHECK(kumiCommSize(comm, &size));

  static float send[COUNT], recv[COUNT], data[COUNT];
  int errors = 0;

  /* 2. Out-of-place allreduce: recv[i] = sum over ranks r of (r + i). */
  for (int i = 0; i < COUNT; ++i) send[i] = (float)(rank + i);
  CHECK(kumiAllReduce(send, recv, COUNT, kumiFloat32, kumiSum, comm, NULL));
  for (int i = 0; i < COUNT; ++i) {
    /* sum_{r<size} (r + i) = size*(size-1)/2 + size*i: small integers, exact in float. */
    float want = (float)(size * (size - 1) / 2 + size * i);
    if (recv[i] != want) ++errors;
  }

  /* 3. In-place allreduce: pass the same buffer as input and output. */
  for (int i = 0; i < COUNT; ++i) data[i] = 1.0f;
  CHECK(kumiAllReduce(data, data, COUNT, kumiFloat32, kumiSum, comm, NULL));
  for (int i = 0; i < COUNT; ++i)
    if (data[i] != (float)size) ++errors;

  /* 4. Broadcast from rank 0 (in place): everybody ends up with rank 0's values. */
  for (int i = 0; i < COUNT; ++i) data[i] = rank == 0 ? (float)(2 * i) : -1.0f;
  CHECK(kumiBroadcast(data, data, COUNT, kumiFloat32, 0, comm, NULL));
  for (int i = 0; i < COUNT; ++i)
    if (data[i] != (float)(2 * i)) ++errors;

  /* 5. Agree on the verdict: sum the error counts of all ranks. */
  int totalErrors = 0;
  CHECK(kumiAllReduce(&errors, &totalErrors, 1, kumiInt32, kumiSum, comm, NULL));
  if (rank == 0)
    printf("kumi-example-c: %d ranks, allreduce and broadcast %s (%d wrong values)\n", size,
           totalErrors == 0 ? "OK" : "FAILED", totalErrors);

  /* 6. Release the communicator (every rank, after its last operation). */
  CHECK(kumiCommDestroy(comm));
  return totalErrors == 0 ? 0 : 1;
}
