/* librdmacm and libibverbs, as installed by rdma-core's -dev packages. */
#include <rdma/rdma_cma.h>
#include <infiniband/verbs.h>
