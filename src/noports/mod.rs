//! NoPorts v5 wire formats shared by every applet.
