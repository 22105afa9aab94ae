package Test::Nginx::Compat::HTTP;

# Request building, sending and response parsing for the compat runner.
# Private to t/lib/compat/Test/Nginx/Socket.pm.
#
# Request semantics mirrored from the real Test::Nginx::Socket:
#   * "--- request": leading blank and "# comment" lines are dropped; the
#     first line is "METHOD [URI [VERSION]]" (defaults "/" and HTTP/1.1);
#     the rest is the body.  "Host: localhost" and "Connection: close" (or
#     keep-alive for all but the last pipelined request) are added unless
#     "--- more_headers" has them; a non-empty body is trimmed and gets a
#     Content-Length unless more_headers sets one or uses chunked encoding.
#   * a request may be given as packets: ["part1", {value => "part2",
#     delay_before => 1}, ...]; each part is written separately.
#   * every request of "--- request eval [...]" uses its own connection;
#     "--- pipelined_requests eval [...]" all go over one connection.
#   * "--- raw_request" (string or array of packets) is sent untouched.
#   * the client timeout is the longest wait between two I/O events.

use strict;
use warnings;

use Errno qw(EAGAIN EINTR EWOULDBLOCK);
use HTTP::Response ();
use IO::Select ();
use IO::Socket::INET ();
use Time::HiRes qw(sleep time);

use Test::Nginx::Compat::Server ();

# "Name: value" lines of --- more_headers -> (CRLF header text, is_chunked)
sub parse_more_headers {
    my ($text) = @_;
    my ($out, $chunked) = ('', 0);
    for my $line (split /\n+/, $text // '') {
        next if $line =~ /^\s*#/ || $line !~ /\S/;
        my ($k, $v) = split /:\s*/, $line, 2;
        $v //= '';
        $v =~ s/\r$//;
        $chunked = 1 if lc $k eq 'transfer-encoding' && $v eq 'chunked';
        $out .= "$k: $v\r\n";
    }
    return ($out, $chunked);
}

# Build one request from its packets.  Returns a list of packet hashes
# ({value => ..., delay_before => ...}); packet boundaries that fall inside
# the body are kept at the same body offsets.
sub build_request {
    my ($name, $packets, $more_headers, $conn) = @_;

    my @parts = map { ref $_ eq 'HASH' ? {%$_} : { value => $_ } } @$packets;
    my $text = join '', map { $_->{value} // '' } @parts;

    $text =~ s/\A(?:\s*#[^\n]*\n|\s+)+//;    # comments, blank lines
    # Record where each packet ends, relative to the cleaned text.
    my $dropped = length(join '', map { $_->{value} // '' } @parts)
                - length $text;
    my @ends;
    my $acc = 0;
    for my $p (@parts) {
        $acc += length($p->{value} // '');
        push @ends, $acc - $dropped;
    }

    $text =~ /\A([^\n]*)(?:\n|\z)/ or die;
    my $line = $1;
    my $line_len = length($line) + ($text =~ /\A[^\n]*\n/ ? 1 : 0);
    my ($meth, $uri, $ver) = split ' ', $line;
    if (!defined $meth) {
        Test::Nginx::Compat::Server::bail_out(
            "$name - the request line is empty");
    }
    $uri //= '/';
    $ver //= 'HTTP/1.1';
    my $body = substr $text, $line_len;

    my ($hdrs, $chunked) = parse_more_headers($more_headers);
    my $lead = 0;
    if (!$chunked && length $body && $hdrs !~ /(?:^|\n)Content-Length:/i) {
        ($lead) = map { length } $body =~ /\A(\s*)/;
        $body =~ s/^\s+|\s+$//g;
        $hdrs .= 'Content-Length: ' . length($body) . "\r\n";
    }
    my $auto = '';
    $auto .= "Host: $Test::Nginx::Compat::Server::ServerName\r\n"
        if $hdrs !~ /(?:^|\n)Host:/i;
    $auto .= "Connection: $conn\r\n" if $hdrs !~ /(?:^|\n)Connection/i;
    my $head = "$meth $uri $ver\r\n$auto$hdrs\r\n";
    my $full = $head . $body;

    # map packet boundaries: anything up to the end of the request line
    # goes with the header block, body offsets are preserved.
    my @out;
    my $pos = 0;
    for my $i (0 .. $#parts) {
        my $end = $ends[$i] - $line_len - $lead;
        $end = $i == $#parts ? length $body
             : $end < 0 ? 0 : $end > length $body ? length $body : $end;
        my $stop = length($head) + $end;
        next if $stop <= $pos && $i != $#parts;
        push @out, { %{ $parts[$i] }, value => substr($full, $pos,
                                                      $stop - $pos) };
        $pos = $stop;
    }
    return @out;
}

# All requests of a block: a list of packet lists.
sub requests_for_block {
    my ($block) = @_;
    my $name = $block->name;

    if (defined(my $raw = $block->raw_request)) {
        my @p = ref $raw eq 'ARRAY' ? @$raw : ($raw);
        return ([ map { ref $_ ? {%$_} : { value => $_ } } @p ]);
    }

    my $more = $block->more_headers;
    my $hdr_for = sub {
        my ($i) = @_;
        return $more // '' unless ref $more eq 'ARRAY';
        my $h = $more->[$i];
        Test::Nginx::Compat::Server::bail_out(
            "$name - --- more_headers has no entry for request $i")
            unless defined $h;
        return $h;
    };

    if (defined(my $reqs = $block->pipelined_requests)) {
        Test::Nginx::Compat::Server::bail_out(
            "$name - --- pipelined_requests must be an array (use eval)")
            unless ref $reqs eq 'ARRAY';
        my $all = '';
        for my $i (0 .. $#$reqs) {
            my $conn = $i == $#$reqs ? 'close' : 'keep-alive';
            $all .= join '', map { $_->{value} }
                build_request($name, [$reqs->[$i]], $hdr_for->($i), $conn);
        }
        return ([ { value => $all } ]);
    }

    my $req = $block->request;
    Test::Nginx::Compat::Server::bail_out("$name - no --- request section")
        unless defined $req;
    my @list = ref $req eq 'ARRAY' ? @$req : ($req);
    my @out;
    for my $i (0 .. $#list) {
        my $packets = ref $list[$i] eq 'ARRAY' ? $list[$i] : [$list[$i]];
        push @out, [ build_request($name, $packets, $hdr_for->($i),
                                   'close') ];
    }
    return @out;
}

sub _connect {
    my ($block, $timeout) = @_;
    my $addr = $block->server_addr_for_client
        // $Test::Nginx::Compat::Server::ServerAddr;
    my $port = $Test::Nginx::Compat::Server::ClientPort;
    my $err;
    # nginx may still be starting (always true under valgrind): retry with
    # a growing delay, like the real runner does.
    for my $try (1 .. 50) {
        my $sock = IO::Socket::INET->new(
            PeerAddr => $addr, PeerPort => $port, Proto => 'tcp',
            Timeout => $timeout,
        );
        return $sock if $sock;
        $err = $!;
        my $child = $Test::Nginx::Compat::Server::ChildPid;
        if ($child && !Test::Nginx::Compat::Server::is_running($child)) {
            last;
        }
        my $st = $Test::Nginx::Compat::Server::SleepTime;
        my $wait = ($st + $st * $try) * $try / 2;
        sleep($wait > 1 ? 1 : $wait);
    }
    return (undef, "cannot connect to $addr:$port: $err");
}

# Send one request (list of packet hashes); returns (raw response, error).
# error is 'timeout' when the client timeout expired.
sub send_request {
    my ($block, $packets, $timeout) = @_;
    my ($sock, $cerr) = _connect($block, $timeout);
    return (undef, $cerr) unless $sock;
    $sock->blocking(0);
    local $SIG{PIPE} = 'IGNORE';

    my $middle = $block->raw_request_middle_delay;
    my @todo = @$packets;
    my $buf = (shift @todo)->{value} // '';
    my $off = 0;
    my $resp = '';
    my $writing = 1;
    my $sel = IO::Select->new($sock);

    while (1) {
        my ($r, $w) = IO::Select->select($sel, $writing ? $sel : undef,
                                         undef, $timeout);
        if (!$r && !$w) {
            next if $!{EINTR};
            close $sock;
            return ($resp, 'timeout');
        }
        if ($w && @$w) {
            if ($off < length $buf) {
                my $n = syswrite $sock, $buf, length($buf) - $off, $off;
                if (!defined $n) {
                    next if $! == EAGAIN || $! == EWOULDBLOCK;
                    $writing = 0;      # peer gone; read what it sent
                } else {
                    $off += $n;
                }
            }
            if ($writing && $off >= length $buf) {
                if (my $next = shift @todo) {
                    my $d = $next->{delay_before} // $middle;
                    sleep $d if $d;
                    ($buf, $off) = ($next->{value} // '', 0);
                } else {
                    $writing = 0;
                    if (defined(my $how = $block->shutdown)) {
                        shutdown $sock, ($how =~ /^\d+$/ ? $how : 1);
                    }
                }
            }
        }
        if ($r && @$r) {
            my $n = sysread $sock, my $chunk, 8192;
            if (!defined $n) {
                next if $! == EAGAIN || $! == EWOULDBLOCK || $! == EINTR;
                last;
            }
            last if $n == 0;
            $resp .= $chunk;
        }
    }
    close $sock;
    return ($resp, undef);
}

# Parse one response from the start of $raw.  Returns (HTTP::Response,
# raw header text, unparsed rest, error message).
sub parse_response {
    my ($raw, $is_head) = @_;
    my $raw_headers = $raw =~ /\A(.*?\r\n)\r\n/s ? $1 : '';
    my $res = HTTP::Response->parse($raw);
    my $code = $res->code;
    if (defined $code && $code !~ /^\d+$/) {
        $res->code(undef);
        $code = undef;
    }
    return ($res, $raw_headers, undef) if $code && ($code == 304
        || $code == 101 || $code == 204 || $is_head);

    my $te = $res->header('Transfer-Encoding') // '';
    my $len = $res->header('Content-Length');
    my $left;
    if ($te eq 'chunked') {
        my $data = $res->content // '';
        my $body = '';
        my $pos = 0;
        while (1) {
            pos($data) = $pos;
            if ($data !~ /\G[ \t]*([0-9A-Fa-f]+)[^\r\n]*\r\n/gc) {
                return ($res, $raw_headers, undef,
                        'bad or truncated chunked body');
            }
            my $size = hex $1;
            $pos = pos $data;
            if ($size == 0) {
                # skip trailers up to the empty line
                my $end = index $data, "\r\n", $pos;
                while ($end > $pos) {
                    $pos = $end + 2;
                    $end = index $data, "\r\n", $pos;
                }
                $pos = $end + 2 if $end >= 0;
                last;
            }
            if (length($data) < $pos + $size + 2) {
                return ($res, $raw_headers, undef, 'truncated chunk');
            }
            $body .= substr $data, $pos, $size;
            $pos += $size + 2;
        }
        $left = substr $data, $pos if $pos < length $data;
        $res->content($body);
    } elsif (defined $len && $len =~ /^\d+$/) {
        my $data = $res->content // '';
        if (length $data > $len) {
            $left = substr $data, $len;
            $res->content(substr $data, 0, $len);
        } elsif (length $data < $len) {
            return ($res, $raw_headers, undef,
                    "response body truncated: $len bytes expected, got "
                    . length $data);
        }
    }
    return ($res, $raw_headers, $left);
}

1;
