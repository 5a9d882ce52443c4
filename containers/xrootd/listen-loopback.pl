#!/usr/bin/perl
# Usage: testbed-listen-loopback PORT... -- COMMAND [ARGUMENT...]
#
# Bind a listening TCP socket on 127.0.0.1 for each PORT, then exec COMMAND in
# this process and pass the sockets to it by the systemd socket-activation
# protocol (sd_listen_fds(3)): file descriptors 3, 4, ... in PORT order, with
# LISTEN_FDS set to their count and LISTEN_PID to this process id, which exec
# keeps.
#
# XRootD has no directive that sets a listening address, because XrdNet::Bind
# always binds the wildcard address. Debian builds XRootD with systemd support,
# though, and XrdInet::BindSD then adopts an inherited socket whose port matches
# a configured port (read in v5.5.3 and in the master branch of June 2026).
# With these sockets XRootD 5.5.3, 5.8.1 and 6.2.0 listen on 127.0.0.1 only
# (checked with ss).
# NOTE: if no inherited socket matches a configured port, XRootD silently binds
# that port on the wildcard address instead. tests/test_xrootd_container.py
# checks the listening addresses.
# The helper is in Perl because perl-base is essential in Debian, so it needs
# no extra package.
use strict;
use warnings;

use Fcntl qw(F_DUPFD);
use POSIX ();
use Socket qw(AF_INET INADDR_LOOPBACK SOCK_STREAM SOL_SOCKET SOMAXCONN
    SO_REUSEADDR pack_sockaddr_in);

my $PROGRAM = 'testbed-listen-loopback';
# sd_listen_fds(3) numbers the passed sockets from SD_LISTEN_FDS_START.
my $SD_LISTEN_FDS_START = 3;
# Lowest descriptor for the sockets before they move to 3, 4, ...
my $PARKING_FD = 64;

sub fail {
    my ($message) = @_;
    print STDERR "$PROGRAM: $message\n";
    exit 1;
}

my @ports;
while (@ARGV && $ARGV[0] ne '--') {
    my $port = shift @ARGV;
    fail("invalid port '$port'; expected an integer from 1 to 65535")
        unless $port =~ /\A[0-9]+\z/ && $port >= 1 && $port <= 65535;
    push @ports, $port;
}
shift @ARGV;
my @command = @ARGV;
fail("usage: $PROGRAM PORT... -- COMMAND [ARGUMENT...]")
    unless @ports && @command;

# Park every socket on a high descriptor first, so that moving socket i to
# descriptor 3 + i cannot close a socket that still sits there.
my @parked;
for my $index (0 .. $#ports) {
    my $port = $ports[$index];
    socket(my $socket, AF_INET, SOCK_STREAM, 0)
        or fail("cannot create a socket for port $port: $!");
    setsockopt($socket, SOL_SOCKET, SO_REUSEADDR, 1)
        or fail("cannot set SO_REUSEADDR for port $port: $!");
    bind($socket, pack_sockaddr_in($port, INADDR_LOOPBACK))
        or fail("cannot bind 127.0.0.1:$port: $!");
    listen($socket, SOMAXCONN)
        or fail("cannot listen on 127.0.0.1:$port: $!");
    my $parked = fcntl($socket, F_DUPFD, $PARKING_FD + $index)
        or fail("cannot duplicate the socket for port $port: $!");
    close($socket);
    push @parked, $parked + 0;
}

# dup2 clears FD_CLOEXEC on the new descriptor, so the sockets survive exec.
for my $index (0 .. $#parked) {
    my $target = $SD_LISTEN_FDS_START + $index;
    defined POSIX::dup2($parked[$index], $target)
        or fail("cannot move the socket for port $ports[$index] to fd $target: $!");
    POSIX::close($parked[$index]);
}

print STDERR "$PROGRAM: listening on "
    . join(', ', map {"127.0.0.1:$_"} @ports)
    . "; starting $command[0]\n";
$ENV{LISTEN_FDS} = scalar @ports;
$ENV{LISTEN_PID} = $$;
delete $ENV{LISTEN_FDNAMES};
exec {$command[0]} @command
    or fail("cannot execute $command[0]: $!");
