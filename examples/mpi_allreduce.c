/*
 * kumi under MPI: kumiCommInitFromMPI (include/kumi/kumi_mpi.h) builds a kumi communicator over
 * MPI_COMM_WORLD, then an allreduce and a split are checked against MPI's own answers.
 *
 *     mpirun -np 4 ./kumi-example-mpi
 *
 * Prints "kumi-example-mpi: rank R of N ok" per rank; exits non-zero on a failed call or a wrong
 * result (and then prints kumi's message).
 */
#include <mpi.h>

#include <kumi/kumi.h>
#include <kumi/kumi_mpi.h>

#include <stdio.h>
#include <stdlib.h>

#define COUNT 4096

static int check(kumiResult_t r, const char* what, int rank) {
  if (r == kumiSuccess) return 0;
  fprintf(stderr, "kumi-example-mpi: rank %d: %s failed: %s: %s\n", rank, what, kumiGetErrorString(r), kumiGetLastError());
  return 1;
}

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rank = 0, size = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);

  kumiComm_t comm = NULL;
  if (check(kumiCommInitFromMPI(&comm, MPI_COMM_WORLD), "kumiCommInitFromMPI", rank)) {
    MPI_Finalize();
    return 1;
  }
  int krank = -1, ksize = -1, errors = 0;
  kumiCommRank(comm, &krank);
  kumiCommSize(comm, &ksize);
  if (krank != rank || ksize != size) {
    fprintf(stderr, "kumi-example-mpi: MPI rank %d of %d became kumi rank %d of %d\n", rank, size, krank, ksize);
    ++errors;
  }

  /* The same integers reduced by both libraries must agree exactly. */
  static int send[COUNT], mine[COUNT], theirs[COUNT];
  for (int i = 0; i < COUNT; ++i) send[i] = (rank + 1) * (i % 97) - rank;
  errors += check(kumiAllReduce(send, mine, COUNT, kumiInt32, kumiSum, comm, NULL), "kumiAllReduce", rank);
  MPI_Allreduce(send, theirs, COUNT, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
  for (int i = 0; i < COUNT; ++i)
    if (mine[i] != theirs[i]) ++errors;

  /* A split by parity: the sub-communicator's sum of ranks matches MPI's on the same split. */
  kumiComm_t half = NULL;
  errors += check(kumiCommSplit(comm, rank % 2, rank, &half), "kumiCommSplit", rank);
  if (half) {
    int v = rank, kv = 0, mv = 0;
    errors += check(kumiAllReduce(&v, &kv, 1, kumiInt32, kumiSum, half, NULL), "kumiAllReduce (split)", rank);
    MPI_Comm mhalf;
    MPI_Comm_split(MPI_COMM_WORLD, rank % 2, rank, &mhalf);
    MPI_Allreduce(&v, &mv, 1, MPI_INT, MPI_SUM, mhalf);
    MPI_Comm_free(&mhalf);
    if (kv != mv) ++errors;
    kumiCommDestroy(half);
  }
  kumiCommDestroy(comm);

  int total = 0;
  MPI_Allreduce(&errors, &total, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
  if (total == 0) printf("kumi-example-mpi: rank %d of %d ok\n", rank, size);
  else fprintf(stderr, "kumi-example-mpi: rank %d: %d errors here, %d in all\n", rank, errors, total);
  MPI_Finalize();
  return total == 0 ? 0 : 1;
}
