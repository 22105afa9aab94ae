package LatencyProxy;

# A TCP proxy that delays every byte by a fixed time in each direction.
#
# Used by bench.pl to put nginx's Redis connection "far away": with a
# delay of D seconds each way, every Redis round trip costs at least 2*D.
#
# One process, one IO::Select loop, no sleeping per connection: whatever
# is read from one side goes into a single FIFO as (due time, destination,
# bytes).  The delay is constant and the clock monotonic, so the FIFO is
# always sorted by due time; the loop sleeps in select() only until the
# head of the FIFO is due, or until a socket is readable or writable.
# A pipelined connection (hiredis sends many commands back to back) thus
# keeps many requests "in flight" inside the proxy at once, as it would
# on a real network with that latency.
#
# Buffers are unbounded (no back-pressure): fine for a benchmark whose
# traffic is small commands and replies.

use strict;
use warnings;

use Errno qw(EAGAIN EWOULDBLOCK EINTR);
use IO::Select;
use IO::Socket::INET;
use Socket qw(IPPROTO_TCP TCP_NODELAY);
use Time::HiRes qw(clock_gettime CLOCK_MONOTONIC);

sub now { clock_gettime(CLOCK_MONOTONIC) }

# run(listen => $listening_socket, host => ..., port => ..., delay => sec)
# Never returns; the caller forks first and kills the child to stop it.
sub run {
    my %o = @_;
    my ($lsn, $delay) = @o{qw(listen delay)};

    $SIG{PIPE} = 'IGNORE';    # a peer going away is an EPIPE, not death
    $lsn->blocking(0);

    my $rsel  = IO::Select->new($lsn);
    my @fifo;                 # [due, endpoint, bytes | undef for "close"]
    my %ep;                   # fileno => endpoint

    # an endpoint: one socket, the other side of its pair, bytes to write
    my $close_pair = sub {
        my ($e) = @_;
        for my $x ($e, $e->{peer}) {
            next if !$x || $x->{closed};
            $x->{closed} = 1;
            $rsel->remove($x->{sock});
            delete $ep{ fileno $x->{sock} };
            close $x->{sock};
        }
    };

    my $flush = sub {
        my ($e) = @_;
        while (length $e->{out}) {
            my $n = syswrite $e->{sock}, $e->{out};
            if (!defined $n) {
                return if $! == EAGAIN || $! == EWOULDBLOCK || $! == EINTR;
                return $close_pair->($e);
            }
            substr($e->{out}, 0, $n, '');
        }
        # the other side closed (after the delay) and all is written
        $close_pair->($e) if $e->{shut};
    };

    my $accept = sub {
        while (my $c = $lsn->accept) {
            my $u = IO::Socket::INET->new(
                PeerAddr => $o{host}, PeerPort => $o{port},
                Proto    => 'tcp',    Timeout  => 2,
            );
            if (!$u) {
                warn "latency proxy: upstream $o{host}:$o{port}: $@\n";
                close $c;
                next;
            }
            my ($a, $b) = map {
                $_->blocking(0);
                # small writes must leave at once, or Nagle adds delay
                setsockopt $_, IPPROTO_TCP, TCP_NODELAY, 1;
                $rsel->add($_);
                $ep{ fileno $_ } = { sock => $_, out => '' };
            } $c, $u;
            ($a->{peer}, $b->{peer}) = ($b, $a);
        }
    };

    while (1) {
        my $t = now();

        # hand over everything that is due
        while (@fifo && $fifo[0][0] <= $t) {
            my (undef, $to, $bytes) = @{ shift @fifo };
            next if $to->{closed};
            if (defined $bytes) {
                $to->{out} .= $bytes;
            } else {
                $to->{shut} = 1;
            }
            $flush->($to);
        }

        my $wsel = IO::Select->new(
            map { $_->{sock} } grep { length $_->{out} } values %ep);
        my $timeout = @fifo ? $fifo[0][0] - $t : undef;
        $timeout = 0 if defined $timeout && $timeout < 0;

        my ($r, $w) = IO::Select->select($rsel, $wsel, undef, $timeout);
        next unless $r;    # timeout (or EINTR): release due chunks

        for my $s (@$w) {
            my $e = $ep{ fileno $s } or next;
            $flush->($e);
        }

        for my $s (@$r) {
            if ($s == $lsn) {
                $accept->();
                next;
            }
            my $e = $ep{ fileno $s } or next;
            my $n = sysread $s, my $buf, 65536;
            if (!defined $n
                && ($! == EAGAIN || $! == EWOULDBLOCK || $! == EINTR))
            {
                next;
            }
            # data or EOF/error: both travel with the same delay, so a
            # close arrives after the bytes sent before it
            push @fifo, [ now() + $delay, $e->{peer}, $n ? $buf : undef ];
            $rsel->remove($s) unless $n;    # nothing more to read here
        }
    }
}

1;
