pub mod nodemgr;
