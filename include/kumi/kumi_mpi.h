/*
 * kumi from MPI: a communicator over the processes of an MPI communicator, for jobs started by
 * mpirun or the MPI Operator. MPI only carries the rendezvous: rank 0 of mpiComm makes a
 * kumiUniqueId (starting a store in its process) and broadcasts it; every rank then joins with
 * its MPI rank. Collective over mpiComm. The kumi ranks equal the MPI ranks.
 *
 * Header-only, so that libkumi is tied to no MPI library (their ABIs differ): include it after
 * <mpi.h> in code that links MPI. Settings other than rank, size and store come from KUMI_*.
 * If rank 0 cannot make the id, every rank fails with its message (kumiGetLastError).
 */
#ifndef KUMI_KUMI_MPI_H_
#define KUMI_KUMI_MPI_H_

#include <mpi.h>

#include <kumi/kumi.h>

static inline kumiResult_t kumiCommInitFromMPI(kumiComm_t* comm, MPI_Comm mpiComm) {
  int rank = 0;
  int size = 0;
  if (MPI_Comm_rank(mpiComm, &rank) != MPI_SUCCESS || MPI_Comm_size(mpiComm, &size) != MPI_SUCCESS)
    return kumiInvalidArgument;
  kumiUniqueId id;
  if (rank == 0) (void)kumiGetUniqueId(&id); /* on failure the id carries the error to every rank */
  if (MPI_Bcast(&id, (int)sizeof id, MPI_BYTE, 0, mpiComm) != MPI_SUCCESS) return kumiSystemError;
  return kumiCommInitRankWithId(comm, size, id, rank);
}

#endif /* KUMI_KUMI_MPI_H_ */
