// Hand copies of the series' IFLA_RDMABOND_* values, used ONLY when build.rs found
// no patched uapi header (cfg(rdmabond_uapi_fallback)): enough to compile and unit
// test the crate on a clean clone. The rbc binary refuses to run in that case.
pub const IFLA_RDMABOND_PORT_UNSPEC: u32 = 0;
pub const IFLA_RDMABOND_PORT_STATE: u32 = 1;
pub const IFLA_RDMABOND_PORT_HOME_ADDRS: u32 = 2;
pub const IFLA_RDMABOND_PORT_HOST_IFINDEX: u32 = 3;
pub const IFLA_RDMABOND_PORT_FAILOVERS: u32 = 4;
pub const IFLA_RDMABOND_PORT_FAILBACKS: u32 = 5;
pub const RDMABOND_PORT_STATE_UP: u32 = 0;
pub const RDMABOND_PORT_STATE_DOWN: u32 = 1;
pub const RDMABOND_PORT_STATE_FAILBACK_PENDING: u32 = 2;
pub const IFLA_RDMABOND_FAILBACK_DELAY: u32 = 3;
